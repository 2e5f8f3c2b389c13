/**
 * The `DeploymentStore` Durable Object (SQLite): one object per app and
 * environment holds that app's deployments, each a version number (1, 2, …),
 * when, by which token, the code's hash, the git commit it came from, and the
 * files of its artifact (kept in R2 by hash, `BLOB_KEYS.deploymentFile`), so
 * that `tandem app rollback` can deploy an old version's very files again.
 * Versions are numbered here, one after the other, in the object's single
 * thread: two deploys recorded at once get two versions.
 *
 * Errors do not cross a Durable Object's RPC as their class: `record` answers
 * an `Outcome`, and gateway/deployment-routes.ts throws the error it carries.
 */
import { DurableObject } from "cloudflare:workers";
import { DEPLOY_LIMITS } from "../sdk/defaults.js";
import { InvalidRequestError, NotFoundError } from "../sdk/errors.js";
import type { DeploymentFile, DeploymentRecord, DeploymentRecordRequest } from "../sdk/protocol.js";
import type { Env } from "./env.js";
import { answer, type Outcome } from "./store-catalog.js";

type Row = {
  version: number;
  app: string;
  env: string;
  created_at: number;
  code_hash: string;
  git_commit: string | null;
  git_dirty: number | null;
  by_id: string;
  by_name: string;
  files: string;
  rollback_of: number | null;
  apps: string | null;
};

export class DeploymentStore extends DurableObject<Env> {
  readonly #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS deployments (
        version INTEGER PRIMARY KEY, app TEXT NOT NULL, env TEXT NOT NULL, created_at INTEGER NOT NULL, code_hash TEXT NOT NULL,
        git_commit TEXT, git_dirty INTEGER, by_id TEXT NOT NULL, by_name TEXT NOT NULL, files TEXT NOT NULL, rollback_of INTEGER, apps TEXT);
      CREATE TABLE IF NOT EXISTS deployment_files (sha256 TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (sha256, version));`);
  }

  /**
   * Records the app's next version. A rollback (`rollbackOf`) must name a version recorded here, and not the live
   * one (the newest): restoring what is live already deploys nothing new.
   */
  async record(app: string, environment: string, request: DeploymentRecordRequest, by: { id: string; name: string }): Promise<Outcome<DeploymentRecord>> {
    return answer(() => {
      const live = this.#live();
      if (request.rollbackOf !== undefined) {
        if (!this.#row(request.rollbackOf)) throw unknownVersion(app, environment, request.rollbackOf, live?.version);
        if (live && request.rollbackOf === live.version)
          throw new InvalidRequestError(
            `version ${live.version} is the live version of app "${app}" already; roll back to an older one (tandem app history ${app})`,
            {
              app,
              version: live.version,
            },
          );
      }
      const version = (live?.version ?? 0) + 1;
      this.#sql.exec(
        `INSERT INTO deployments (version, app, env, created_at, code_hash, git_commit, git_dirty, by_id, by_name, files, rollback_of, apps)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        version,
        app,
        environment,
        Date.now(),
        request.codeHash,
        request.git?.commit ?? null,
        request.git === undefined ? null : Number(request.git.dirty),
        by.id,
        by.name,
        JSON.stringify(request.files),
        request.rollbackOf ?? null,
        request.apps === undefined ? null : JSON.stringify(request.apps),
      );
      for (const sha256 of new Set(request.files.map((f) => f.sha256)))
        this.#sql.exec("INSERT OR IGNORE INTO deployment_files (sha256, version) VALUES (?, ?)", sha256, version);
      return toRecord(this.#row(version)!);
    });
  }

  /** The app's deployments, newest (the live one) first. */
  async list(): Promise<DeploymentRecord[]> {
    return this.#sql.exec<Row>("SELECT * FROM deployments ORDER BY version DESC LIMIT ?", DEPLOY_LIMITS.maxListed).toArray().map(toRecord);
  }

  /** One version; a `not_found` naming the versions there are when it is not recorded. */
  async get(app: string, environment: string, version: number): Promise<Outcome<DeploymentRecord>> {
    return answer(() => {
      const row = this.#row(version);
      if (!row) throw unknownVersion(app, environment, version, this.#live()?.version);
      return toRecord(row);
    });
  }

  /**
   * The apps of each of this app's deployments that names a file with this SHA-256 (only those are served back): none
   * when no deployment does. A Worker holds every app it serves, so its file is theirs too.
   */
  async fileApps(sha256: string): Promise<string[][]> {
    return this.#sql
      .exec<Pick<Row, "app" | "apps">>("SELECT d.app, d.apps FROM deployment_files f JOIN deployments d ON d.version = f.version WHERE f.sha256 = ?", sha256)
      .toArray()
      .map((row) => (row.apps === null ? [row.app] : (JSON.parse(row.apps) as string[])));
  }

  #live(): Row | undefined {
    return this.#sql.exec<Row>("SELECT * FROM deployments ORDER BY version DESC LIMIT 1").toArray()[0];
  }

  #row(version: number): Row | undefined {
    return this.#sql.exec<Row>("SELECT * FROM deployments WHERE version = ?", version).toArray()[0];
  }
}

function unknownVersion(app: string, environment: string, version: number, live: number | undefined): NotFoundError {
  const known = live === undefined ? "none is recorded" : `versions are 1 to ${live}`;
  return new NotFoundError(`app "${app}" has no version ${version} in environment "${environment}" (${known}; tandem app history ${app})`, {
    app,
    version,
  });
}

function toRecord(row: Row): DeploymentRecord {
  return {
    app: row.app,
    env: row.env,
    version: row.version,
    createdAt: row.created_at,
    codeHash: row.code_hash,
    ...(row.git_commit === null ? {} : { git: { commit: row.git_commit, dirty: row.git_dirty === 1 } }),
    by: { id: row.by_id, name: row.by_name },
    files: JSON.parse(row.files) as DeploymentFile[],
    ...(row.rollback_of === null ? {} : { rollbackOf: row.rollback_of }),
    ...(row.apps === null ? {} : { apps: JSON.parse(row.apps) as string[] }),
  };
}
