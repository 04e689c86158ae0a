/**
 * containerd's snapshots API (`containerd.services.snapshots.v1.Snapshots`) over gRPC on a unix socket, for
 * containerd's `proxy_plugins` (type "snapshot"), with @grpc/grpc-js and the .proto files in ./proto (written from
 * containerd's v1.6 API, loaded at run time by @grpc/proto-loader).
 *
 * Errors become the gRPC codes containerd turns back into its errdefs: ENOENT -> NotFound, EEXIST ->
 * AlreadyExists, EBUSY -> FailedPrecondition, EINVAL -> InvalidArgument, anything else -> Unknown (with the
 * message). Times are google.protobuf.Timestamp with nanoseconds. The request's `snapshotter` field is ignored:
 * one server serves one pool.
 */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { isThinpoolError } from '../errors.js';
import type { ContainerdSnapshotter, Mount } from './snapshotter.js';
import type { Kind, SnapshotInfo } from './store.js';

const PROTO = 'containerd/services/snapshots/v1/snapshots.proto';

/** The proto directory: next to this file in the source tree, or src/snapshotter/proto from dist/. */
function protoDir(): string {
  for (const rel of ['./proto', '../../../src/snapshotter/proto']) {
    const d = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${d}/${PROTO}`)) return d;
  }
  throw new Error(`containerd's snapshots .proto files are missing (looked for ${PROTO} under src/snapshotter/proto)`);
}

interface Timestamp {
  seconds: string | number;
  nanos: number;
}

interface InfoMsg {
  name: string;
  parent: string;
  kind: string;
  created_at: Timestamp | null;
  updated_at: Timestamp | null;
  labels: Record<string, string>;
}

const KIND: Record<Kind, string> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

function ts(ns: bigint): Timestamp {
  return { seconds: (ns / 1_000_000_000n).toString(), nanos: Number(ns % 1_000_000_000n) };
}

function infoMsg(i: SnapshotInfo): InfoMsg {
  return { name: i.name, parent: i.parent, kind: KIND[i.kind], created_at: ts(i.created), updated_at: ts(i.updated), labels: i.labels };
}

function toStatus(e: unknown): Partial<grpc.StatusObject> {
  const msg = e instanceof Error ? e.message : String(e);
  if (isThinpoolError(e)) {
    const code = (
      {
        ENOENT: grpc.status.NOT_FOUND,
        EEXIST: grpc.status.ALREADY_EXISTS,
        EBUSY: grpc.status.FAILED_PRECONDITION,
        EINVAL: grpc.status.INVALID_ARGUMENT,
      } as Record<string, grpc.status>
    )[e.code];
    if (code !== undefined) return { code, details: msg };
  }
  return { code: grpc.status.UNKNOWN, details: msg };
}

type Unary<Req> = (call: grpc.ServerUnaryCall<Req, unknown>, cb: grpc.sendUnaryData<unknown>) => void;

function unary<Req>(fn: (req: Req) => Promise<unknown> | unknown, onError: (name: string, e: unknown) => void, name: string): Unary<Req> {
  return (call, cb) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then(
        (r) => cb(null, r),
        (e: unknown) => {
          onError(name, e);
          cb(toStatus(e));
        },
      );
  };
}

export interface GrpcServerOptions {
  /** Called for every failed request (method and error). */
  onError?: (method: string, e: unknown) => void;
}

/** A running gRPC server; stop() lets requests in flight finish (up to a grace period), then closes. */
export interface RunningServer {
  address: string;
  stop(graceMs?: number): Promise<void>;
}

export async function serveGrpc(s: ContainerdSnapshotter, socket: string, opts: GrpcServerOptions = {}): Promise<RunningServer> {
  const def = protoLoader.loadSync(PROTO, { includeDirs: [protoDir()], keepCase: true, longs: String, enums: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: { services: { snapshots: { v1: { Snapshots: { service: grpc.ServiceDefinition } } } } };
  };
  const service = pkg.containerd.services.snapshots.v1.Snapshots.service;
  const onError = opts.onError ?? (() => undefined);
  const mounts = (m: Mount[]) => ({ mounts: m });
  type KeyReq = { key: string; parent: string; labels: Record<string, string> };

  const impl: grpc.UntypedServiceImplementation = {
    Prepare: unary<KeyReq>(async (r) => mounts(await s.prepare(r.key, r.parent, r.labels)), onError, 'Prepare'),
    View: unary<KeyReq>(async (r) => mounts(await s.view(r.key, r.parent, r.labels)), onError, 'View'),
    Mounts: unary<{ key: string }>(async (r) => mounts(await s.mounts(r.key)), onError, 'Mounts'),
    Commit: unary<{ name: string; key: string; labels: Record<string, string> }>(
      async (r) => {
        await s.commit(r.name, r.key, r.labels);
        return {};
      },
      onError,
      'Commit',
    ),
    Remove: unary<{ key: string }>(
      async (r) => {
        await s.remove(r.key);
        return {};
      },
      onError,
      'Remove',
    ),
    Stat: unary<{ key: string }>((r) => ({ info: infoMsg(s.stat(r.key)) }), onError, 'Stat'),
    Update: unary<{ info: InfoMsg | null; update_mask: { paths: string[] } | null }>(
      async (r) => {
        const info = r.info ?? { name: '', labels: {} };
        return { info: infoMsg(await s.update(info.name, info.labels, r.update_mask?.paths ?? [])) };
      },
      onError,
      'Update',
    ),
    Usage: unary<{ key: string }>(
      (r) => {
        const u = s.usage(r.key);
        return { size: String(u.size), inodes: String(u.inodes) };
      },
      onError,
      'Usage',
    ),
    Cleanup: unary<unknown>(
      async () => {
        await s.cleanup();
        return {};
      },
      onError,
      'Cleanup',
    ),
    List: (call: grpc.ServerWritableStream<{ filters: string[] }, unknown>) => {
      try {
        const all = s.list(call.request.filters ?? []).map(infoMsg);
        for (let i = 0; i < all.length; i += 100) call.write({ info: all.slice(i, i + 100) });
        call.end();
      } catch (e) {
        onError('List', e);
        call.destroy(Object.assign(new Error(toStatus(e).details), toStatus(e)));
      }
    },
  };

  const server = new grpc.Server();
  server.addService(service, impl);
  if (existsSync(socket) && lstatSync(socket).isSocket()) unlinkSync(socket); // a killed predecessor's
  const address = `unix://${socket}`;
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  let stopping: Promise<void> | null = null;
  return {
    address,
    stop(graceMs = 5000) {
      stopping ??= new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }).then(() => {
        try {
          if (existsSync(socket)) unlinkSync(socket);
        } catch {
          /* gone */
        }
      });
      return stopping;
    },
  };
}
