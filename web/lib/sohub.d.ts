// Type declarations of sohub.js (the sohub.v1 WebSocket client).

export const VERSION: string;
/** The WebSocket subprotocol: "sohub.v1". */
export const PROTOCOL: string;

export const NetStatusEvent: { readonly NET_STATUS: 'netStatus' };
export const SyncEvent: { readonly SYNC: 'sync' };

/** An info object, as Flash's NetStatusEvent.info. */
export interface StatusInfo {
  level: 'status' | 'error' | 'warning' | string;
  code: string;
  description?: string;
  /** Connect.Success: the server's id of the connection. */
  clientId?: number;
  /** Connect.Success: true when this is a reconnection. */
  reconnected?: boolean;
  /** Connect.Reconnecting: the attempt number and the wait before it. */
  attempt?: number;
  delayMs?: number;
  /** The WebSocket close code, on Closed / Failed / Reconnecting. */
  wsCode?: number;
  [member: string]: unknown;
}

export interface NetStatusEventObject {
  type: 'netStatus';
  target: NetConnection | SharedObject;
  info: StatusInfo;
}

export type ChangeCode = 'clear' | 'success' | 'reject' | 'change' | 'delete';

export interface ChangeItem {
  code: ChangeCode;
  /** The slot's name (absent for clear). */
  name?: string;
  /** The value before: for change and delete the previous value, for
   *  success the server's value before the write, for reject the value
   *  that was refused. */
  oldValue?: unknown;
}

export interface SyncEventObject {
  type: 'sync';
  target: SharedObject;
  changeList: ChangeItem[];
}

export interface AsyncErrorEventObject {
  type: 'asyncError';
  target: NetConnection | SharedObject;
  error: Error;
  handler?: string;
  method?: string;
  args: unknown[];
}

export interface PrivateMessage {
  id: number;
  from: string;
  to: string;
  text: string;
  ts: number;
}

export interface PresenceEventObject {
  type: 'presence';
  target: Chat;
  /** Everyone online now, sorted. */
  users: string[];
  joined: string[];
  left: string[];
  /** True for the first list after (re)subscribing. */
  initial: boolean;
}

export interface PrivateEventObject {
  type: 'private';
  target: Chat;
  message: PrivateMessage;
}

export class Emitter {
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
  /** addEventListener returning a function that removes the listener. */
  on(type: string, listener: (event: any) => void): () => void;
  dispatchEvent(event: { type: string; [k: string]: unknown }): void;
}

// ---- values

/** An AMF3 integer; a number in arithmetic (valueOf). */
export class SohubInt {
  constructor(value: number);
  readonly value: number;
  valueOf(): number;
  toJSON(): { $amf: 'int'; value: number };
}

/** Any other tagged AMF value (typed object, ECMA array, vector, dictionary, XML, non-UTF-8 string). */
export class AmfValue {
  constructor(tag: string, fields?: Record<string, unknown>);
  /** The `$amf` name: "object", "ecma", "vector-int", "dict", "xml", ... */
  tag: string;
  /** object, ecma: the members, decoded. */
  members?: Record<string, unknown>;
  /** object: the class name. */
  class?: string;
  items?: unknown[];
  dense?: unknown[];
  entries?: [unknown, unknown][];
  external?: unknown;
  [field: string]: unknown;
  toJSON(): object;
}

/** A Date read from AMF may carry its AMF0 time zone (minutes). */
export type AmfDate = Date & { amfTz?: number };

/** JSON form (docs/amf-json.md) to a JavaScript value. */
export function fromAmfJSON(json: unknown): unknown;
/** A JavaScript value to its JSON form; throws TypeError for what AMF cannot hold. */
export function toAmfJSON(value: unknown): unknown;

// ---- calls

export interface ResponderLike<T = unknown> {
  result?(value: T): void;
  status?(info: StatusInfo): void;
}

export class Responder<T = unknown> implements ResponderLike<T> {
  constructor(result?: (value: T) => void, status?: (info: StatusInfo) => void);
  result?: (value: T) => void;
  status?: (info: StatusInfo) => void;
}

export class CallError extends Error {
  constructor(info: StatusInfo);
  readonly info: StatusInfo;
  readonly code: string | undefined;
}

// ---- NetConnection

export interface ReconnectOptions {
  /** First wait after a drop (ms, default 500). */
  initialDelayMs?: number;
  /** Cap of the waits (ms, default 10000). */
  maxDelayMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Each wait is drawn in [d * (1 - jitter), d] (default 0.5). */
  jitter?: number;
  /** Attempts before giving up (default Infinity). */
  maxAttempts?: number;
}

export interface NetConnectionOptions {
  /** A WebSocket constructor (browsers: the global one; Node: `ws`). */
  WebSocket?: new (url: string, protocols?: string | string[]) => any;
  user?: string;
  token?: string;
  /** "APP[/INSTANCE][?QUERY]" when the URL's path does not carry it. */
  app?: string;
  /** false: no reconnection. */
  reconnect?: false | ReconnectOptions;
  /** Calls made while (re)connecting wait for the connection (default true); false: they fail at once. */
  queueCalls?: boolean;
}

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export class NetConnection extends Emitter {
  constructor(options?: NetConnectionOptions);
  /** Methods the server calls, by name: `chat.onPrivate` is client.chat.onPrivate or client['chat.onPrivate']. */
  client: Record<string, any>;
  /** Flash AS2 style handler of every netStatus info. */
  onStatus: ((info: StatusInfo) => void) | null;
  readonly connected: boolean;
  readonly state: ConnectionState;
  readonly uri: string | null;
  readonly clientId: number | null;
  readonly connectInfo: StatusInfo | null;
  /** ws://HOST:PORT/ws/APP/INSTANCE; args are Flash's connect arguments. */
  connect(url: string, ...args: unknown[]): void;
  call(method: string, responder: ResponderLike, ...args: unknown[]): void;
  call<T = any>(method: string, responder: null | undefined, ...args: unknown[]): Promise<T>;
  invoke<T = any>(method: string, ...args: unknown[]): Promise<T>;
  close(): void;
  reconnectNow(): void;
  addEventListener(type: 'netStatus', listener: (event: NetStatusEventObject) => void): void;
  addEventListener(type: 'asyncError', listener: (event: AsyncErrorEventObject) => void): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

// ---- SharedObject

export class SharedObject extends Emitter {
  /** The same instance for the same name, uri and persistence (until closed). */
  static getRemote(name: string, uri: string | null, persistent?: boolean): SharedObject;
  constructor(name: string, uri: string | null, persistent?: boolean);
  readonly name: string;
  readonly uri: string | null;
  readonly persistent: boolean;
  /** The slots; read-only (assignments throw TypeError). */
  readonly data: Readonly<Record<string, any>>;
  /** The version this client holds (0: none yet). */
  readonly version: number;
  /** True once the server answered `use` on the current connection. */
  readonly ready: boolean;
  /** Writes not applied yet (queued offline or in flight). */
  readonly pendingWrites: number;
  /** Target of send(): the object itself by default (own properties only). */
  client: Record<string, any>;
  /** Flash AS2 style sync handler. */
  onSync: ((changeList: ChangeItem[]) => void) | null;
  connect(nc: NetConnection): boolean;
  /** null or undefined removes the slot. */
  setProperty(name: string, value: unknown): void;
  setDirty(name: string): void;
  send(handler: string, ...args: unknown[]): void;
  close(): void;
  addEventListener(type: 'sync', listener: (event: SyncEventObject) => void): void;
  addEventListener(type: 'netStatus', listener: (event: NetStatusEventObject) => void): void;
  addEventListener(type: 'asyncError', listener: (event: AsyncErrorEventObject) => void): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

// ---- Chat

export interface ChatOptions {
  /** Subscribe to the `presence` object (default true). */
  presence?: boolean;
  /** Acknowledge each message once onPrivate returned (default false). */
  autoAck?: boolean;
}

export class Chat extends Emitter {
  constructor(nc: NetConnection, options?: ChatOptions);
  onPrivate: ((message: PrivateMessage) => void) | null;
  readonly presence: SharedObject | null;
  sendPrivate(to: string, text: string, clientId?: string | number): Promise<{ id: number; status: 'delivered' | 'queued' }>;
  ack(id: number): Promise<{ acked: number }>;
  online(): string[];
  close(): void;
  addEventListener(type: 'private', listener: (event: PrivateEventObject) => void): void;
  addEventListener(type: 'presence', listener: (event: PresenceEventObject) => void): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

declare const _default: {
  NetConnection: typeof NetConnection;
  SharedObject: typeof SharedObject;
  Chat: typeof Chat;
  Responder: typeof Responder;
  CallError: typeof CallError;
  SohubInt: typeof SohubInt;
  AmfValue: typeof AmfValue;
  fromAmfJSON: typeof fromAmfJSON;
  toAmfJSON: typeof toAmfJSON;
  NetStatusEvent: typeof NetStatusEvent;
  SyncEvent: typeof SyncEvent;
  VERSION: string;
};
export default _default;
