/** Errors of the union driver carry errno-style codes, like node:fs errors. */
export type UnionErrorCode = 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'EBADF' | 'EROFS';

export class UnionError extends Error {
  readonly code: UnionErrorCode;
  constructor(code: UnionErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
    this.name = 'UnionError';
  }
}
