/** The volume name rule, shared by the pool (which enforces it) and the CLI (which checks it before opening). */

/** Why name is not a valid volume name, or null when it is. */
export function volumeNameProblem(name: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'it is empty';
  if (name.length > 255) return `it is ${name.length} characters long`;
  if (name.includes('/') || name.includes('\\')) return 'it contains a slash';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'it contains a control character';
  if (/\s/.test(name)) return 'it contains a space';
  if (/^#?\d+$/.test(name)) return 'a number names a device id';
  return null;
}

export const VOLUME_NAME_RULE = '1-255 characters, no spaces, slashes or control characters, not a number';
