/**
 * `Volume` as seen from code running inside the gateway (edge functions, web
 * endpoints, agents): the same operations as `/v1/volumes`, through the
 * Worker's bindings, with no network hop and no token (the code is the
 * deployment's own).
 */
import { InternalError } from "../sdk/errors.js";
import type { VolumeChange, VolumeCommitAnswer, VolumeInfo, VolumeListing } from "../sdk/protocol.js";
import type { CommitTerms, FileRead, FileUpload, VolumeBackend } from "../sdk/volume.js";
import type { Env } from "./env.js";
import { runStore } from "./run-context.js";
import { commitStored, createVolume, deleteVolume, listFiles, listVolumes, readFile, storeFile, volumeInfo } from "./volumes.js";

export class GatewayVolumes implements VolumeBackend {
  async create(name: string, existOk: boolean): Promise<VolumeInfo> {
    return (await createVolume(env(), name, existOk)).info;
  }

  info(name: string): Promise<VolumeInfo> {
    return volumeInfo(env(), name);
  }

  delete(name: string): Promise<VolumeInfo> {
    return deleteVolume(env(), name);
  }

  list(): Promise<VolumeInfo[]> {
    return listVolumes(env());
  }

  listdir(name: string, path: string, recursive: boolean): Promise<VolumeListing> {
    return listFiles(env(), name, path, recursive);
  }

  async read(name: string, path: string): Promise<FileRead> {
    const { version, file, body } = await readFile(env(), name, path);
    return { size: file.size, mode: file.mode, version, body };
  }

  /** The call or request running: a handle's base version is its own (docs/volumes.md, "Inside the gateway"). */
  scope(): object | undefined {
    return runStore.getStore();
  }

  async write(name: string, files: FileUpload[], changes: VolumeChange[], terms: CommitTerms): Promise<VolumeCommitAnswer> {
    const bindings = env();
    await volumeInfo(bindings, name); // a missing volume is refused before any block is stored
    const puts: VolumeChange[] = [];
    for (const file of files) puts.push(await storeFile(bindings, file));
    return commitStored(bindings, name, [...puts, ...changes], terms);
  }
}

function env(): Env {
  const rc = runStore.getStore();
  if (!rc) throw new InternalError("a volume was used outside a request; use volumes from inside handlers");
  return rc.env;
}
