import { createDecipheriv, createECDH, hkdfSync, randomBytes, type ECDH } from "node:crypto";

// The browser's half of RFC 8291: the subscription keys and the decryption of an aes128gcm body.
// Written from the RFC with node:crypto alone, so the fake checks a sender's encryption
// independently of the library that produced it.

export interface BrowserKeys {
  ecdh: ECDH;
  // Uncompressed P-256 point (65 bytes): the subscription's `p256dh`.
  publicKey: Buffer;
  // 16 random bytes: the subscription's `auth`.
  auth: Buffer;
}

export function browserKeys(): BrowserKeys {
  const ecdh = createECDH("prime256v1");
  const publicKey = ecdh.generateKeys();
  return { ecdh, publicKey, auth: randomBytes(16) };
}

export class DecryptError extends Error {}

const HEADER = 16 + 4 + 1;
const TAG = 16;
const PUBLIC_KEY = 65;

export interface Decrypted {
  plaintext: Buffer;
  // The application server's ephemeral public key (keyid), base64url.
  senderKey: string;
  recordSize: number;
}

// Throws DecryptError for anything a push service would reject as a malformed message.
export function decryptAes128gcm(body: Buffer, keys: BrowserKeys): Decrypted {
  if (body.length < HEADER) throw new DecryptError("body shorter than the aes128gcm header");
  const salt = body.subarray(0, 16);
  const recordSize = body.readUInt32BE(16);
  const idlen = body.readUInt8(20);
  // RFC 8291 §4: the keyid is the sender's uncompressed P-256 key, nothing else.
  if (idlen !== PUBLIC_KEY) throw new DecryptError(`keyid is ${idlen} bytes, not the 65-byte P-256 public key`);
  if (body.length < HEADER + idlen + TAG + 1) throw new DecryptError("ciphertext shorter than one record");
  const senderKey = body.subarray(HEADER, HEADER + idlen);
  const ciphertext = body.subarray(HEADER + idlen);
  if (recordSize < TAG + 2) throw new DecryptError(`record size ${recordSize} is below the minimum`);
  // RFC 8291 §4: a push message is exactly one record.
  if (ciphertext.length > recordSize) throw new DecryptError(`ciphertext of ${ciphertext.length} bytes spans more than one ${recordSize}-byte record`);

  let ecdhSecret: Buffer;
  try {
    ecdhSecret = keys.ecdh.computeSecret(senderKey);
  } catch {
    throw new DecryptError("keyid is not a point on P-256");
  }
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), keys.publicKey, senderKey]);
  const ikm = Buffer.from(hkdfSync("sha256", ecdhSecret, keys.auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));

  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG));
  let padded: Buffer;
  try {
    padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - TAG)), decipher.final()]);
  } catch {
    throw new DecryptError("authentication tag mismatch: wrong keys or corrupted ciphertext");
  }
  // Padding is zeros after a delimiter; the last (only) record's delimiter is 0x02.
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== 2) throw new DecryptError("missing the 0x02 last-record delimiter");
  return { plaintext: Buffer.from(padded.subarray(0, end)), senderKey: senderKey.toString("base64url"), recordSize };
}
