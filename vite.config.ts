import { defineConfig } from 'vite';

// The renderer only: React through esbuild's automatic JSX runtime (no plugin needed for a production build).
export default defineConfig({
  root: 'src/renderer',
  base: './',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: '../../dist/renderer',
    emptyOutDir: true,
    target: 'chrome120',
    sourcemap: true,
    // No inline scripts or styles: the CSP allows 'self' only.
    assetsInlineLimit: 0,
    // Loaded from disk by a desktop app, not over a network: one bundle is fine.
    chunkSizeWarningLimit: 2000,
    modulePreload: { polyfill: false },
    rollupOptions: {
      // zod ships comments Rollup cannot place; harmless, and noise in every build.
      onwarn(warning, warn) {
        if (warning.code === 'INVALID_ANNOTATION' || /annotation that Rollup cannot interpret/.test(warning.message)) return;
        warn(warning);
      },
    },
  },
});
