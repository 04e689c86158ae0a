/**
 * Names of images and containers: what each may hold, the one place that checks them, and how a user-given
 * name is quoted in a message. Layer: images and snapshotter.
 *
 * Contract:
 * - An image name follows image references (library/alpine:3.19, registry.example/x@sha256:...): 1-255
 *   characters of letters, digits and . _ : @ / + -, starting with a letter or digit, no "..".
 * - A container name follows the volume-name rule (and Docker's): the same without "/".
 * - The checks throw EINVAL naming the rule; `quoteName` puts a name in a message JSON-escaped (DEL too).
 */
import { ThinpoolError } from '../errors.js';
import { q } from '../messages.js';

/** Image names follow image references (library/alpine:3.19, registry.example/x@sha256:...): "/" and ":" are part of them. */
const IMAGE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,254}$/;
/** Container names follow the volume-name rule (and Docker's): no "/". */
const CONTAINER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,254}$/;

/** A user-given name in quotes for a message: JSON-escaped, DEL too, so nothing is echoed raw (q() leaves printable names bare). */
export function quoteName(name: string): string {
  return JSON.stringify(String(name)).replace(/\x7f/g, '\\u007f');
}

/** Throws EINVAL unless name is a valid image name. */
export function checkImageName(name: string): void {
  if (typeof name !== 'string' || !IMAGE_NAME_RE.test(name) || name.includes('..')) {
    throw new ThinpoolError(
      'EINVAL',
      `bad image name ${q(name)}: 1-255 characters of letters, digits and . _ : @ / + -, starting with a letter or digit`,
    );
  }
}

/** Throws EINVAL unless name is a valid container name. */
export function checkContainerName(name: string): void {
  if (typeof name !== 'string' || !CONTAINER_NAME_RE.test(name) || name.includes('..')) {
    throw new ThinpoolError(
      'EINVAL',
      `bad container name ${q(name)}: 1-255 characters of letters, digits and . _ : @ + -, starting with a letter or digit (no "/")`,
    );
  }
}
