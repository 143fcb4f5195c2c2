import { join } from 'node:path';
import { damagedDayFiles, manifestIdentity } from './archive-files.ts';
import type { ArchiveStore, FolderIdentity } from './archive-store.ts';

/** What a run finds its folder to be, against what Steward remembers of the paths it archived to. */
export type FolderHistory =
  | { readonly kind: 'known' }
  /** No archive.json: a new archive, or the old one deleted or emptied; what was remembered is forgotten. */
  | { readonly kind: 'new'; readonly forgotten: number }
  /** Another archive.json than the one last seen here: another archive put in its place. */
  | { readonly kind: 'replaced'; readonly forgotten: number }
  /** The archive.json last seen at `from`, which no longer holds it: the folder was moved here. */
  | { readonly kind: 'moved'; readonly from: string; readonly rooms: number }
  /** The archive.json that is still at `of`: this folder is a copy, and its day files are not Steward's to cut. */
  | { readonly kind: 'copy'; readonly of: string };

const same = (a: FolderIdentity, b: FolderIdentity): boolean => a.serverName === b.serverName && a.createdTs === b.createdTs;

/**
 * Settles what Steward's database says about `out` before its rooms are read, so that what it
 * remembers always describes the files at that path: a moved folder carries on where it was, and
 * remembered lengths are never applied to another archive's files (they would be cut to them).
 */
export async function recogniseFolder(store: ArchiveStore, out: string, manifest: { created: boolean; identity: FolderIdentity | undefined }): Promise<FolderHistory> {
  const { identity } = manifest;
  const recorded = store.folder(out);
  let history: FolderHistory = { kind: 'known' };
  if (manifest.created) history = { kind: 'new', forgotten: store.forget(out) };
  else if (recorded && (!identity || !same(recorded, identity))) history = { kind: 'replaced', forgotten: store.forget(out) };
  if (identity && !store.hasRooms(out)) {
    // Paths with rooms recorded under this archive.json: one that no longer holds it, and whose
    // every recorded day file is here at least as long as recorded, is where this folder was moved
    // from. (A copy written to since has files of its own that are not here.)
    let copyOf: string | undefined;
    for (const other of store.foldersWith(identity, out)) {
      if (!store.hasRooms(other)) continue;
      const there = await manifestIdentity(other);
      if (there && same(there, identity)) {
        copyOf ??= other;
      } else if (await holdsAllFilesOf(store, other, out)) {
        history = { kind: 'moved', from: other, rooms: store.moveFolder(other, out) };
        break;
      }
    }
    if (history.kind !== 'moved' && copyOf !== undefined) history = { kind: 'copy', of: copyOf };
  }
  if (identity) store.recordFolder(out, identity);
  return history;
}

async function holdsAllFilesOf(store: ArchiveStore, recordedAt: string, out: string): Promise<boolean> {
  for (const room of store.rooms(recordedAt)) {
    const damaged = await damagedDayFiles(join(out, 'rooms', room.dirName), store.files(room.id));
    if (damaged.length > 0) return false;
  }
  return true;
}

/** The line of the job's summary that says what was found, if anything is worth saying. */
export function folderNote(out: string, h: FolderHistory): string | undefined {
  const rooms = (n: number): string => `${n} room${n === 1 ? '' : 's'}`;
  switch (h.kind) {
    case 'known':
      return undefined;
    case 'new':
      return h.forgotten > 0 ? `${out} had no archive.json (deleted or emptied?): the ${rooms(h.forgotten)} Steward had archived there were archived again from their first event.` : undefined;
    case 'replaced':
      return h.forgotten === 0 ? undefined : `${out} holds another archive.json than the one Steward wrote there (another archive put in its place?): what Steward remembered of the ${rooms(h.forgotten)} there is forgotten, and day files it has no record of are left as they are.`;
    case 'moved':
      return `${out} is the archive Steward wrote at ${h.from}, moved: its ${rooms(h.rooms)} carry on from where they were.`;
    case 'copy':
      return `${out} is a copy of the archive at ${h.of} (the same archive.json), which Steward goes on writing: the copy's day files are left as they are. Archive into a new folder to start another archive.`;
  }
}
