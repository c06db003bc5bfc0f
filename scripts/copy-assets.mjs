// Migrations are SQL files read at run time; the compiled server looks for them beside itself.
import { cpSync } from 'node:fs';

cpSync(new URL('../src/migrations/', import.meta.url), new URL('../dist/migrations/', import.meta.url), {
  recursive: true,
  filter: (src) => !src.endsWith('.ts'),
});
