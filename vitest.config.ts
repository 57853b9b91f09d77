import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/unit/**/*.test.ts', 'tests/integration/**/*.test.ts'],
    testTimeout: 120000,
    hookTimeout: 300000,
    pool: 'forks',
    fileParallelism: false,
  },
});
