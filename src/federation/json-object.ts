export type JsonObject = Record<string, unknown>;

/** A JSON object as JSON.parse produces it: not null, not an array. */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
