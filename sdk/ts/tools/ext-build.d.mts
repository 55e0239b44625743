// Types of tools/ext-build.mjs (the library behind the ext-build command).

export const FEATURES: readonly string[];
export const DEFAULT_DISABLED: readonly string[];
export const ALLOWED_WASI_INTERFACES: readonly string[];
export class BuildError extends Error {}
export function defaultWitDir(): string;
export function worldImports(witDir: string, world: string): Promise<string[]>;
export function entrySource(entryPath: string, interfaces?: string[]): string;
export function bundle(entryPath: string, interfaces?: string[]): Promise<string>;
export function disabledFeatures(names: readonly string[]): string[];
export function componentImports(bytes: Uint8Array): Promise<string[]>;
export function refusedImports(imports: readonly string[]): string[];
export function defaultCacheDir(entryPath: string): string;
export interface BuildOptions {
  entry: string;
  out: string;
  witDir?: string;
  world?: string;
  disable?: readonly string[];
  force?: boolean;
  cacheDir?: string;
  log?: (line: string) => void;
}
export interface BuildResult {
  out: string;
  skipped: boolean;
  bytes: number;
  imports: string[];
  seconds: number;
}
export function build(options: BuildOptions): Promise<BuildResult>;
export function check(path: string): Promise<{ imports: string[]; refused: string[] }>;
