/**
 * The ingest pipeline: every byte that enters the service passes here, once.
 *
 * Entry points, and how they reach it:
 * - GraphQL multipart: `upload`, `uploadMany` (UploadService), `createAsset` and
 *   `updateAsset` with a file (AssetService), a worker's `uploadSignedDocument`
 *   (WorkerService through UploadService) → `Ingest.receive()` streams the
 *   request's file part through the checks into storage;
 * - direct uploads: the client PUTs to storage (or the service's PUT endpoint);
 *   `completeDirectUpload` and `createAsset(signedId)` read the stored bytes once
 *   through `Ingest.inspector()` (DirectUploadService.verifyCopy);
 * - resumable uploads (tus): the finished upload's bytes go through the same
 *   inspector when its last byte arrives.
 *
 * The checks, in order, on one pass (InspectStream), each failing the stream:
 * 1. type from the first 64 KiB (magic numbers, never the name or declared type),
 *    against the entity's policy → UNSUPPORTED_MEDIA_TYPE;
 * 2. size against the type's limit, counted while streaming → PAYLOAD_TOO_LARGE;
 * 3. SHA-256 (on a worker thread), PDF page count, MP4/MP3 duration, an image's
 *    header (size, orientation; the pixel and decode-memory limits are checked
 *    from it by imageFacts());
 * 4. malware (CLAMD_URL): every byte to clamd as it passes; the stream ends only
 *    on a clean verdict → MALWARE_DETECTED, SCANNER_UNAVAILABLE.
 * The writer behind it (storage.put, or the encrypting writer) completes only
 * if the stream ends; whatever a refused file left is deleted by its caller.
 */
export { Ingest, type IngestOptions } from './ingest.js';
export { InspectStream, SNIFF_BYTES, type InspectOptions, type InspectResult } from './inspect-stream.js';
export { receiveUpload, type ReceiveOptions, type ReceivedUpload } from './receive-upload.js';
export { imageFacts, decodeBytes, MAX_INPUT_PIXELS, type ImageFacts } from './image-facts.js';
export { readHeader, IMAGE_HEADER_BYTES, type ImageHeader } from './image-header.js';
export { sanitiseFileName } from './file-name.js';
export type { ScanOutcome } from './scan-step.js';
