// Type declarations for webkv.js: MXNet's KVStore for the browser (WebGPU
// when available, CPU otherwise). They use the WebGPU types of the
// @webgpu/types package (npm i -D @webgpu/types); tests/tsc checks this file
// under tsc --strict.
/// <reference types="@webgpu/types" />

/** A key: an integer or a string; one store takes one kind only. */
export type Key = number | string;

/** A value: float32 data in JavaScript memory, or a GPUBuffer of webkv's
 * device (STORAGE | COPY_SRC | COPY_DST usage, at least 4·size bytes). A
 * plain number[] is converted to a Float32Array. */
export type Value = Float32Array | GPUBuffer | number[];
/** Row numbers of a row-sparse value or pull. */
export type RowIds = number[] | Int32Array | Uint32Array | BigInt64Array;
/** A row-sparse value (MXNet's row_sparse): rows rowIds of a key, every other row zero. */
export interface RowSparse {
  rows: Float32Array | number[];
  rowIds: RowIds;
}
/** What rowSparsePull resolves to: the rows asked, sorted, without repeats, and their values. */
export interface RowSparseResult {
  rows: Float32Array;
  rowIds: number[];
}

/** Store types: 'local' (alias 'local_update_cpu', 'local_allreduce_cpu'),
 * 'device' ('local_allreduce_device'), 'dist_sync', 'dist_async',
 * 'dist_device_sync' ('dist_sync_device'). */
export type StoreType =
  | 'local' | 'local_update_cpu' | 'local_allreduce_cpu'
  | 'device' | 'local_allreduce_device'
  | 'dist_sync' | 'dist_async' | 'dist_device_sync' | 'dist_sync_device'
  | (string & {});

export interface CreateOptions {
  /** Relay URL for dist types (ws://, wss://, http://, https://; an empty path means /ws). */
  url?: string;
  /** Access token of the job (sent as a websocket subprotocol). */
  token?: string;
  /** Job id on the relay (default "default"). */
  job?: string;
  /** Workers the job waits for before its first round (MXNet's DMLC_NUM_WORKER; 0: start at once). */
  workers?: number;
  /** Element count from which keys are split over every relay shard (0: 1,000,000); all workers must agree. */
  bigArrayBound?: number;
  /** Bound on connecting to the relay and joining the job, in ms (default 30000). */
  timeoutMs?: number;
  /** Retry the first connection until the relay is up (within timeoutMs); without it a relay that cannot be
   * reached rejects at once with code 'UNREACHABLE'. Connections lost later are always retried. */
  waitForRelay?: boolean;
  /** Continue a run of the job whose keys are left from earlier (its workers all left, or the relay restarted
   * on its data); without it init of such a key rejects with code 'EARLIER_RUN'. */
  resume?: boolean;
  /** A GPUDevice of the page's to compute on (default: webkv requests one
   * with the adapter's largest buffer limits). Every create must pass the same one. */
  device?: GPUDevice;
  /** For 'device' types without WebGPU: run on the CPU (default true) and
   * say so in KVStore.fallback, or reject (false). */
  allowCPUFallback?: boolean;
  /** Where webkv.wasm and webkv-go.js are (default: next to webkv.js); used by the first load only. */
  wasmURL?: string | URL;
  execURL?: string | URL;
  /** Log what webkv does to the console (it is silent otherwise); used by the first load only. */
  debug?: boolean;
}

/** MXNet's optimizer names. */
export type OptimizerName = 'sgd' | 'nag' | 'adam' | 'adamw' | 'adagrad' | 'rmsprop' | 'adadelta' | 'signum' | 'ftrl' | 'lamb';

/** MXNet optimizer spec: name plus MXNet's constructor arguments. Unknown or
 * inapplicable fields are errors. */
export interface OptimizerSpec {
  name: OptimizerName | (string & {});
  version?: number;
  learning_rate?: number;
  wd?: number;
  rescale_grad?: number;
  clip_gradient?: number;
  momentum?: number;
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  gamma1?: number;
  gamma2?: number;
  centered?: boolean;
  clip_weights?: number;
  rho?: number;
  lamda1?: number;
  beta?: number;
  wd_lh?: number;
  lower_bound?: number;
  upper_bound?: number;
  bias_correction?: boolean;
  correct_bias?: boolean;
  eta?: number;
  lr_scheduler?: { type: 'factor' | 'multifactor' | 'poly' | 'cosine' | (string & {}); [k: string]: unknown };
  lr_mult?: Record<string, number>;
  wd_mult?: Record<string, number>;
}

/** Error codes carried by rejected Promises (WebKVError.code). */
export type ErrorCode =
  | 'UNKNOWN_KEY' | 'DUPLICATE_INIT' | 'SHAPE_MISMATCH' | 'MIXED_KEYS' | 'NO_VALUE'
  | 'UNKNOWN_TYPE' | 'UNSUPPORTED' | 'CLOSED' | 'NO_TRANSPORT' | 'AUTH' | 'BAD_COMPRESSION'
  | 'BAD_STATES' | 'BAD_OPTIMIZER' | 'BAD_ARGUMENT' | 'WEBGPU' | 'NO_WEBGPU'
  /** The relay could not be reached at all (the message names the address). */
  | 'UNREACHABLE'
  /** The relay refused the page's Origin (the message is the relay's: which origin, and how to allow it). */
  | 'ORIGIN'
  /** init of a key the job holds from an earlier run (see CreateOptions.resume). */
  | 'EARLIER_RUN'
  /** The job has another worker count than CreateOptions.workers. */
  | 'WORKER_COUNT'
  | 'ERROR';

/** The error every webkv Promise rejects with (`e instanceof WebKVError`). */
export declare class WebKVError extends Error {
  constructor(message: string, code?: ErrorCode);
  readonly name: 'WebKVError';
  /** The error's class; branch on it, not on the message. */
  readonly code: ErrorCode;
}

export interface GPUInfo {
  available: boolean;
  /** Why there is no WebGPU backend (when available is false). */
  reason?: string;
  adapter?: string;
  /** The backend's name, e.g. "webgpu: google swiftshader". */
  backend?: string;
  /** The device webkv computes on: create GPUBuffers for push/pull on it. */
  device?: GPUDevice;
  limits?: Record<string, number>;
}

/** Fields every dist event may carry. */
export interface EventBase {
  /** Events dropped just before this one because listeners did not keep up. */
  dropped?: number;
}

export interface EventMap {
  /** A dist_sync round of key closed on the relay (this worker's push was answered). late: the push came
   *  after the round had closed and was not applied (round is then the key's current round); rescaled:
   *  the round closed at its deadline with a quorum and the sum was rescaled. Round numbers increase per key. */
  round: EventBase & { key: Key; round: number; late: boolean; rescaled: boolean };
  /** The job's members changed, as the relay reports it (a worker joined, left or timed out). live: the
   *  members' ranks, ascending. */
  membership: EventBase & { rank: number; numWorkers: number; live: number[] };
  /** The link to a relay shard: 'connected' (joined), 'reconnecting' (connection lost; attempt counts the
   *  tries, message the last error), 'reconnected' (joined again with the same rank), 'lost' (for good:
   *  calls fail; message says why). */
  connection: EventBase & { state: 'connected' | 'reconnecting' | 'reconnected' | 'lost'; shard: number; attempt?: number; message?: string };
  gpuerror: { message: string };
  devicelost: { message: string };
  close: Record<string, never>;
}

export declare class KVStore {
  readonly type: string;
  readonly rank: number;
  readonly numWorkers: number;
  /** A dist store's websocket bytes so far: each message with its frame header, every shard and reconnection. */
  readonly traffic: { sent: number; received: number };
  /** 'webgpu: <adapter>', or 'cpu+wasm-simd' / 'cpu' (without WebAssembly SIMD) for stores computing on the CPU. */
  readonly backend: string;
  readonly fallback: string | null;

  init(key: Key, value: Value, shape?: number[]): Promise<void>;
  /** Values given in one call for one key are summed; higher priorities run first. */
  push(key: Key, value: Value | Value[], priority?: number): Promise<void>;
  push(keys: Key[], values: (Value | Value[])[], priority?: number): Promise<void>;
  pull(key: Key, out?: undefined, priority?: number): Promise<Float32Array>;
  pull<T extends Float32Array | GPUBuffer>(key: Key, out: T, priority?: number): Promise<T>;
  pull(keys: Key[], outs?: (Float32Array | GPUBuffer | undefined)[], priority?: number): Promise<(Float32Array | GPUBuffer)[]>;
  pushPull(key: Key, value: Value | Value[], out?: undefined, priority?: number): Promise<Float32Array>;
  pushPull<T extends Float32Array | GPUBuffer>(key: Key, value: Value | Value[], out: T, priority?: number): Promise<T>;
  pushPull(keys: Key[], values: (Value | Value[])[], outs?: (Float32Array | GPUBuffer | undefined)[], priority?: number): Promise<(Float32Array | GPUBuffer)[]>;
  /** Pushes rows rowIds (strictly increasing) of key only; values of one call are summed row by row. */
  pushRowSparse(key: Key, value: RowSparse | RowSparse[]): Promise<void>;
  /** Pulls rows rowIds of key (any order, repeats allowed): the rows asked, sorted, without repeats. */
  rowSparsePull(key: Key, rowIds: RowIds): Promise<RowSparseResult>;
  /** Writes rows rowIds of key into out (the key's size), zeroes every other row. */
  rowSparsePull(key: Key, rowIds: RowIds, out: Float32Array): Promise<Float32Array>;
  /** An optimizer spec, a name ('adam': MXNet's defaults), or a spec in JSON. */
  setOptimizer(spec: OptimizerSpec | OptimizerName | (string & {})): Promise<void>;
  setGradientCompression(c: { type: '2bit' | '1bit'; threshold?: number }): Promise<void>;
  /** MXNet's _send_command_to_servers: every server of a dist store handles the command first. */
  sendCommandToServers(head: number, body: string): Promise<void>;
  /** How the relay combines each dist_sync round's pushes: 'sum', 'mean', 'median', 'trimmed-mean=0.1', optionally ',clip=C'. */
  setAggregate(rule: 'sum' | 'mean' | 'median' | (string & {})): Promise<void>;
  barrier(): Promise<void>;
  waitAll(): Promise<void>;
  saveOptimizerStates(dumpOptimizer?: boolean): Promise<Uint8Array>;
  loadOptimizerStates(bytes: Uint8Array | ArrayBuffer): Promise<void>;
  close(): Promise<void>;
  on<E extends keyof EventMap>(event: E, fn: (detail: EventMap[E]) => void): () => void;
}

/** Loads webkv.wasm once (create does). simd: false leaves the SIMD kernels (webkv-simd.wasm) out, the CPU
 * path then runs Go's loops; debug: true logs what webkv does to the console (silent otherwise). */
export declare function load(opts?: { wasmURL?: string | URL; execURL?: string | URL; simd?: boolean; simdURL?: string | URL; debug?: boolean }): Promise<unknown>;
/** Whether the browser runs WebAssembly SIMD. */
export declare function simdSupported(): boolean;
/** Instantiates the SIMD kernels over a Go program's memory: their exports, or {error}. */
export declare function loadSIMD(memory: WebAssembly.Memory, opts?: { simdURL?: string | URL }): Promise<WebAssembly.Exports | { error: string }>;
export declare function gpu(device?: GPUDevice): Promise<GPUInfo>;
export declare function create(type: StoreType, opts?: CreateOptions): Promise<KVStore>;
