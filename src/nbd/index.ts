// NBD server for thin volumes (see docs/nbd.md).
export { NbdServer, type NbdServerOptions, type NbdListenOptions, type NbdAddress } from './server.js';
export { readCertificateDir, readPskFile, type NbdCertificates, type NbdTlsMode, type NbdTlsOptions } from './tls.js';
export { serveCommand, parseListen, type ServeCommandOptions } from './serve-command.js';
export { attachVolume, mountExt4, kernelMountUnavailable, type AttachedVolume, type MountedVolume } from './kernel-mount.js';
