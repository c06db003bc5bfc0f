/**
 * The sealed-value format. One AES-256-GCM encryption under a data key, with the location of the
 * value (key scope, table, row id, column) as associated data: a ciphertext copied to another
 * row, column or workspace no longer authenticates.
 *
 *   byte 0      format version (1)
 *   bytes 1-4   data-key version, unsigned big-endian
 *   bytes 5-16  random 96-bit nonce
 *   then        ciphertext, then the 16-byte tag
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { secureRandomBytes } from '../random.js';
import { BulkheadError } from '../errors.js';

export const FORMAT_VERSION = 1;
const HEADER_BYTES = 1 + 4 + 12;
const TAG_BYTES = 16;

/** Where a sealed value lives. Part of the associated data, so it must be exactly what `open` is given. */
export interface SealContext {
  readonly table: string;
  readonly rowId: string;
  readonly column: string;
}

/** Length-prefixed parts, so ("ab","c") and ("a","bc") can never produce the same bytes. */
export function associatedData(label: string, parts: readonly string[]): Buffer {
  const chunks: Buffer[] = [Buffer.from(label, 'utf8')];
  for (const part of parts) {
    const bytes = Buffer.from(part, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    chunks.push(length, bytes);
  }
  return Buffer.concat(chunks);
}

export const valueAad = (scope: string, context: SealContext): Buffer =>
  associatedData('bulkhead/value/v1', [scope, context.table, context.rowId, context.column]);

export function sealValue(dek: Buffer, dekVersion: number, aad: Buffer, plaintext: Buffer): Buffer {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(FORMAT_VERSION, 0);
  header.writeUInt32BE(dekVersion, 1);
  secureRandomBytes(12).copy(header, 5);
  const cipher = createCipheriv('aes-256-gcm', dek, header.subarray(5));
  cipher.setAAD(aad);
  return Buffer.concat([header, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The data-key version a sealed value needs, read from its header (validated). */
export function sealedKeyVersion(sealed: Uint8Array): number {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (bytes.length < HEADER_BYTES + TAG_BYTES || bytes.readUInt8(0) !== FORMAT_VERSION) {
    throw new BulkheadError('ciphertext_invalid', 'not a sealed value of a known format');
  }
  return bytes.readUInt32BE(1);
}

export function openValue(dek: Buffer, aad: Buffer, sealed: Uint8Array): Buffer {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  sealedKeyVersion(bytes);
  try {
    const decipher = createDecipheriv('aes-256-gcm', dek, bytes.subarray(5, HEADER_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([decipher.update(bytes.subarray(HEADER_BYTES, bytes.length - TAG_BYTES)), decipher.final()]);
  } catch (error) {
    // Wrong row, column, workspace or key, or altered bytes: GCM cannot tell which, and neither do we.
    throw new BulkheadError('ciphertext_invalid', 'a sealed value failed authentication (moved, altered, or sealed under another key)', { cause: error });
  }
}
