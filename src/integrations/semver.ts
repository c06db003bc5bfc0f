/**
 * Semantic Versioning 2.0.0 (https://semver.org): template versions are compared by precedence
 * so an instance can be told which versions are upgrades. No dependency: the grammar is one
 * regular expression and precedence is a few lines.
 */

/**
 * The regular expression semver.org publishes (numbered capture groups variant). The JSON Schema
 * for templates repeats it as `pattern`; a test keeps the two identical.
 */
export const SEMVER_PATTERN =
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$';

/** Longer versions are refused: the grammar has no bound, but a version is a label, not a payload. */
export const MAX_SEMVER_LENGTH = 128;

const SEMVER = new RegExp(SEMVER_PATTERN);
const NUMERIC = /^\d+$/;

export function isSemver(s: string): boolean {
  return s.length <= MAX_SEMVER_LENGTH && SEMVER.test(s);
}

// Numeric identifiers have no leading zeros (the grammar forbids them), so a longer one is
// larger and equal lengths compare as text. This stays exact beyond Number.MAX_SAFE_INTEGER.
function compareNumeric(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareIdentifier(a: string, b: string): number {
  const an = NUMERIC.test(a);
  const bn = NUMERIC.test(b);
  if (an && bn) return compareNumeric(a, b);
  // A numeric identifier has lower precedence than an alphanumeric one.
  if (an !== bn) return an ? -1 : 1;
  // ASCII order, which is what `<` on strings gives for the allowed characters.
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Precedence per semver 2.0 §11: negative if `a` comes before `b`, positive if after, 0 if they
 * have the same precedence (which includes versions that differ only in build metadata).
 * Throws a TypeError for a string that is not a version: a silent order for garbage would hide
 * the bug that produced it.
 */
export function compareSemver(a: string, b: string): number {
  const pa = parse(a);
  const pb = parse(b);
  for (let i = 0; i < 3; i++) {
    const c = compareNumeric(pa.core[i] ?? '0', pb.core[i] ?? '0');
    if (c !== 0) return c;
  }
  // A version without a prerelease outranks the same version with one (1.0.0-rc.1 < 1.0.0).
  const releaseA = pa.prerelease.length === 0;
  const releaseB = pb.prerelease.length === 0;
  if (releaseA || releaseB) return releaseA === releaseB ? 0 : releaseA ? 1 : -1;
  const n = Math.min(pa.prerelease.length, pb.prerelease.length);
  for (let i = 0; i < n; i++) {
    const c = compareIdentifier(pa.prerelease[i] ?? '', pb.prerelease[i] ?? '');
    if (c !== 0) return c;
  }
  // All shared identifiers equal: the longer list has higher precedence (1.0.0-alpha < 1.0.0-alpha.1).
  return Math.sign(pa.prerelease.length - pb.prerelease.length);
}

function parse(version: string): { core: string[]; prerelease: string[] } {
  const match = version.length <= MAX_SEMVER_LENGTH ? SEMVER.exec(version) : null;
  if (match === null) throw new TypeError(`not a semantic version: ${JSON.stringify(version.slice(0, 40))}`);
  return { core: [match[1] ?? '0', match[2] ?? '0', match[3] ?? '0'], prerelease: match[4] === undefined ? [] : match[4].split('.') };
}
