/** JSON values as the snapshot code handles them: the /sync answer is untrusted, so every read is checked. */
export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function asObject(v: unknown): Record<string, unknown> | undefined {
  return isObject(v) ? v : undefined;
}

export function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

export function asString(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export const USER_ID = /^@[^:\s]+:\S+$/;
export const ROOM_ALIAS = /^#[^:\s]+:\S+$/;

export function isUserId(v: unknown): v is string {
  return typeof v === 'string' && USER_ID.test(v) && v.length <= 255;
}

/** The server part of a user id, alias or v1 room/event id; undefined when there is none. */
export function serverOf(id: string): string | undefined {
  const i = id.indexOf(':');
  return i > 0 && i < id.length - 1 ? id.slice(i + 1) : undefined;
}

export function localpartOf(id: string): string {
  const i = id.indexOf(':');
  return i > 0 ? id.slice(1, i) : id.slice(1);
}
