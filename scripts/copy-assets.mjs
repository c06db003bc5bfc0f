// Data files read at run time (migrations, the provider catalog); the compiled server looks for them beside itself.
import { cpSync } from 'node:fs';

cpSync(new URL('../src/migrations/', import.meta.url), new URL('../dist/migrations/', import.meta.url), {
  recursive: true,
  filter: (src) => !src.endsWith('.ts'),
});

cpSync(new URL('../src/connections/catalog.json', import.meta.url), new URL('../dist/connections/catalog.json', import.meta.url));
