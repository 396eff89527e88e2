// ESLint: typescript-eslint's recommended rules, and the module boundaries of the workspace
// (DESIGN.md section 2) as Nx project tags:
//   type:app -> type:lib only; type:lib -> type:lib only; the e2e tests may use both;
//   tf:none libs (config, evaluation, tracking, fs) never reach TensorFlow, not even through
//   another lib; only libs/tf (tf:backend) imports @tensorflow/*.
import nx from '@nx/eslint-plugin';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '.venv/**', '.emseg/**', '.nx/**', '**/*.d.mts'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts', '**/*.mjs'],
    plugins: { '@nx': nx },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          allowCircularSelfDependency: true, // tests import their own lib by its public name,
          depConstraints: [
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:lib'], bannedExternalImports: ['@tensorflow/*'] },
            { sourceTag: 'type:lib', onlyDependOnLibsWithTags: ['type:lib'] },
            { sourceTag: 'type:e2e', onlyDependOnLibsWithTags: ['type:lib', 'type:app'], bannedExternalImports: ['@tensorflow/*'] },
            { sourceTag: 'tf:none', notDependOnLibsWithTags: ['tf:backend', 'tf:loads'], bannedExternalImports: ['@tensorflow/*'] },
            { sourceTag: 'tf:loads', bannedExternalImports: ['@tensorflow/*'] },
          ],
        },
      ],
    },
  },
  {
    // Node scripts (setup, benchmarks, tools): plain JavaScript with Node globals.
    files: ['**/*.mjs'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
      },
    },
  },
);
