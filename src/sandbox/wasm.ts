/**
 * Loading QuickJS (the sync, release WASM build) with a hard cap on its linear memory.
 *
 * Why the cap: under Emscripten, QuickJS cannot ask malloc for the size of a block, so its
 * accounting adds 8 bytes per allocation whatever the allocation's size
 * (justjake/quickjs-emscripten#271). `setMemoryLimit` therefore refuses one allocation larger
 * than the limit, and bounds the number of allocations, but not the bytes held: a guest that
 * keeps many 100 KiB strings grows the WASM memory to its 2 GiB maximum, and WASM memory is
 * never returned. The only real bound is the instance's `WebAssembly.Memory` maximum: at the
 * cap, malloc returns NULL and QuickJS throws its ordinary out-of-memory error. An instance
 * runs one execution at a time, so its cap bounds that execution.
 */
import { type QuickJSSyncVariant, type QuickJSWASMModule, newQuickJSWASMModuleFromVariant, newVariant } from 'quickjs-emscripten-core';
import variantModule from '@jitl/quickjs-wasmfile-release-sync';

const PAGE = 64 * 1024;
/** The build's own initial memory (its INITIAL_MEMORY): static data, C stack and the first heap. */
export const BASE_MEMORY_BYTES = 16 * 1024 * 1024;
/** What the build allows without a cap (its MAXIMUM_MEMORY). */
const BUILD_MAXIMUM_BYTES = 2 * 1024 * 1024 * 1024;

/** WebAssembly is not in this project's lib (ES2023 only): the narrow shape used here. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
type WasmMemoryConstructor = new (descriptor: { initial: number; maximum: number }) => WasmMemory;

export interface LoadOptions {
  /**
   * Hard cap on the instance's linear memory, including the build's 16 MiB base. Rounded up to
   * a 64 KiB page; at least the base; default the build's 2 GiB.
   */
  readonly maxMemoryBytes?: number;
}

export interface LoadedQuickJS {
  readonly module: QuickJSWASMModule;
  /** Current size of the instance's linear memory (bytes); it only grows. */
  memoryBytes(): number;
  /** The cap the instance was created with (bytes). */
  readonly maxMemoryBytes: number;
}

/**
 * The ceiling for an instance that runs executions with this `memoryBytes` limit: the build's
 * base plus the limit. The base is mostly free heap, so an execution gets roughly its limit plus
 * up to 16 MiB before malloc fails.
 */
export function memoryCapFor(memoryBytes: number): number {
  return pageAlign(BASE_MEMORY_BYTES + memoryBytes);
}

const pageAlign = (bytes: number): number => Math.ceil(bytes / PAGE) * PAGE;

function baseVariant(): QuickJSSyncVariant {
  // The package's types describe its CommonJS shape ({ default: variant }); the ESM build that
  // Node loads here exports the variant itself. Accept both.
  const candidate: unknown = variantModule;
  return (typeof candidate === 'object' && candidate !== null && 'default' in candidate ? candidate.default : candidate) as QuickJSSyncVariant;
}

/** Loads a fresh WASM instance of QuickJS whose linear memory cannot grow past the cap. */
export async function loadCappedQuickJS(options: LoadOptions = {}): Promise<LoadedQuickJS> {
  const maxMemoryBytes = Math.min(BUILD_MAXIMUM_BYTES, Math.max(BASE_MEMORY_BYTES, pageAlign(options.maxMemoryBytes ?? BUILD_MAXIMUM_BYTES)));
  const Memory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly.Memory;
  const memory = new Memory({ initial: BASE_MEMORY_BYTES / PAGE, maximum: maxMemoryBytes / PAGE });
  const variant = newVariant(baseVariant(), { wasmMemory: memory });
  const module = await newQuickJSWASMModuleFromVariant(variant);
  return { module, maxMemoryBytes, memoryBytes: () => memory.buffer.byteLength };
}

/** Loads QuickJS without a memory cap beyond the build's own (the compiler, and tests). */
export async function loadQuickJS(): Promise<QuickJSWASMModule> {
  return (await loadCappedQuickJS()).module;
}
