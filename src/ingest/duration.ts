// Duration of audio and video, read cheaply while the upload streams past (SPEC 5:
// "duration for audio and video where it can be read cheaply"). Each probe looks at
// a few header bytes and keeps nothing else: an MP4's movie header (`mvhd` inside
// `moov`, wherever `moov` sits in the file, large boxes skipped by arithmetic), an
// MP3's Xing/Info or VBRI frame count, or its constant bitrate and byte count.
// Anything unexpected, or implausible (not finite, not positive, over
// MAX_PLAUSIBLE_SECONDS), gives no duration rather than a wrong one.

export interface DurationProbe {
  /** Sees the next bytes of the file, in order. Never throws. */
  feed(chunk: Buffer): void;
  /** Seconds (millisecond precision), or undefined when the file does not say. */
  finish(totalSize: number): number | undefined;
}

/** A probe for the detected type, or undefined when the type has no duration. */
export function durationProbeFor(mime: string): DurationProbe | undefined {
  if (mime === 'video/mp4') return new Mp4Duration();
  if (mime === 'audio/mpeg') return new Mp3Duration();
  return undefined;
}

/**
 * The longest duration believed: 7 days. Headers are the client's bytes, and a
 * forged one says anything (an mvhd of 2^63 units, 2^32 MP3 frames: centuries).
 * Real uploads here are clips, tours and recordings of hours; a week is far past
 * them (and past what 100 MiB of video holds at any usable bitrate), so a longer
 * claim is reported as no duration rather than a wrong one.
 */
export const MAX_PLAUSIBLE_SECONDS = 7 * 24 * 3600;

const round = (seconds: number): number | undefined =>
  Number.isFinite(seconds) && seconds > 0 && seconds <= MAX_PLAUSIBLE_SECONDS ? Math.round(seconds * 1000) / 1000 : undefined;

/** Gathers bytes at fixed absolute offsets of a stream that is seen chunk by chunk. */
class Gather {
  readonly bytes: Buffer;
  filled = 0;
  constructor(
    readonly start: number,
    length: number,
  ) {
    this.bytes = Buffer.alloc(length);
  }
  get full(): boolean {
    return this.filled === this.bytes.length;
  }
  /** Copies what `chunk` (which starts at absolute offset `at`) holds of the wanted range. */
  take(chunk: Buffer, at: number): void {
    const from = this.start + this.filled;
    if (this.full || from < at || from >= at + chunk.length) return;
    this.filled += chunk.copy(this.bytes, this.filled, from - at);
  }
  view(): Buffer {
    return this.bytes.subarray(0, this.filled);
  }
}

// ---------------------------------------------------------------------------
// MP4 (ISO BMFF): top-level boxes are [size:u32][type:4cc] (size 1: a u64 size
// follows; size 0: to the end of the file). The movie header `mvhd` is a child of
// `moov` and holds timescale (units per second) and duration (in those units).

/** How much of `moov` is read looking for `mvhd` (conventionally its first child). */
const MOOV_PREFIX = 64 * 1024;

class Mp4Duration implements DurationProbe {
  private seen = 0;
  private header: Gather | null = new Gather(0, 16);
  private moov: Gather | null = null;
  private seconds: number | undefined;
  private done = false;

  feed(chunk: Buffer): void {
    const at = this.seen;
    this.seen += chunk.length;
    // One chunk can hold many small boxes: walk them until the chunk is used up.
    while (!this.done) {
      if (this.moov) {
        this.moov.take(chunk, at);
        if (!this.moov.full) return;
        this.seconds = movieHeaderSeconds(this.moov.view());
        this.done = true;
        return;
      }
      const h = this.header!;
      h.take(chunk, at);
      // A header is 8 bytes, 16 with a 64-bit size; it may straddle chunks.
      const need = h.filled >= 8 && h.bytes.readUInt32BE(0) === 1 ? 16 : 8;
      if (h.filled < need) return; // the rest of the header comes with the next chunk
      const size32 = h.bytes.readUInt32BE(0);
      const type = h.bytes.toString('latin1', 4, 8);
      const size = size32 === 1 ? Number(h.bytes.readBigUInt64BE(8)) : size32;
      if (size32 === 0 || size < need || !Number.isSafeInteger(size)) {
        this.done = true; // runs to the end of the file, or is not a box at all
        return;
      }
      if (type === 'moov') {
        this.moov = new Gather(h.start + need, Math.min(size - need, MOOV_PREFIX));
        continue;
      }
      this.header = new Gather(h.start + size, 16);
      if (this.header.start >= this.seen) return;
    }
  }

  finish(): number | undefined {
    // A moov shorter than the prefix ends with the file: use what arrived.
    if (!this.done && this.moov) this.seconds = movieHeaderSeconds(this.moov.view());
    return this.seconds;
  }
}

/** Seconds from the `mvhd` among the children of a `moov` box (given its first bytes). */
function movieHeaderSeconds(moov: Buffer): number | undefined {
  for (let off = 0; off + 8 <= moov.length; ) {
    const size = moov.readUInt32BE(off);
    const type = moov.toString('latin1', off + 4, off + 8);
    if (type === 'mvhd') {
      const b = off + 8; // full box: version (1), flags (3)
      const v = moov[b];
      if (v === 0 && b + 20 <= moov.length) {
        const timescale = moov.readUInt32BE(b + 12);
        const duration = moov.readUInt32BE(b + 16);
        return timescale > 0 && duration !== 0xffffffff ? round(duration / timescale) : undefined;
      }
      if (v === 1 && b + 32 <= moov.length) {
        const timescale = moov.readUInt32BE(b + 20);
        const duration = moov.readBigUInt64BE(b + 24);
        return timescale > 0 && duration !== 0xffffffffffffffffn ? round(Number(duration) / timescale) : undefined;
      }
      return undefined;
    }
    if (size < 8) return undefined;
    off += size;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// MP3: an optional ID3v2 tag, then MPEG audio frames. The first frame may be a
// Xing/Info (LAME) or VBRI header that counts the frames; without one the stream
// is taken as constant bitrate: audio bytes × 8 / bitrate. An ID3v1 tag (the last
// 128 bytes, "TAG") is not audio.

/** Bytes after the ID3v2 tag searched for the first frame, and read from it. */
const MP3_SCAN = 4096;

const SAMPLE_RATES: Record<number, number[]> = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] };
const BITRATES_V1 = {
  3: [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
  2: [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
  1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
} as Record<number, number[]>;
const BITRATES_V2 = {
  3: [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
  2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
  1: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
} as Record<number, number[]>;

interface FrameHeader {
  /** 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5. */
  version: number;
  /** 3: layer I, 2: layer II, 1: layer III. */
  layer: number;
  bitrate: number;
  sampleRate: number;
  samplesPerFrame: number;
  mono: boolean;
}

function frameHeader(b: Buffer, at: number): FrameHeader | undefined {
  if (at + 4 > b.length || b[at] !== 0xff || (b[at + 1]! & 0xe0) !== 0xe0) return undefined;
  const version = (b[at + 1]! >> 3) & 3;
  const layer = (b[at + 1]! >> 1) & 3;
  const bitrateIndex = b[at + 2]! >> 4;
  const rateIndex = (b[at + 2]! >> 2) & 3;
  if (version === 1 || layer === 0 || bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return undefined;
  const bitrate = (version === 3 ? BITRATES_V1 : BITRATES_V2)[layer]![bitrateIndex]! * 1000;
  const sampleRate = SAMPLE_RATES[version]![rateIndex]!;
  const samplesPerFrame = layer === 3 ? 384 : layer === 2 ? 1152 : version === 3 ? 1152 : 576;
  return { version, layer, bitrate, sampleRate, samplesPerFrame, mono: b[at + 3]! >> 6 === 3 };
}

class Mp3Duration implements DurationProbe {
  private seen = 0;
  private readonly id3 = new Gather(0, 10);
  private audio: Gather | null = null;
  private tail = Buffer.alloc(0);

  feed(chunk: Buffer): void {
    const at = this.seen;
    this.seen += chunk.length;
    if (!this.id3.full) {
      this.id3.take(chunk, at);
      if (this.id3.full) {
        this.audio = new Gather(id3v2Length(this.id3.bytes), MP3_SCAN);
        // Without a tag the audio starts at 0: its first bytes are the ones just gathered.
        if (this.audio.start === 0) this.audio.take(this.id3.bytes, 0);
      }
    }
    if (this.audio && !this.audio.full) this.audio.take(chunk, at);
    // The last 128 bytes, for an ID3v1 tag.
    this.tail = chunk.length >= 128 ? Buffer.from(chunk.subarray(chunk.length - 128)) : Buffer.concat([this.tail, chunk]).subarray(-128);
  }

  finish(totalSize: number): number | undefined {
    if (!this.audio) return undefined;
    const b = this.audio.view();
    let first = -1;
    let h: FrameHeader | undefined;
    for (let i = 0; i + 4 <= b.length && !h; i++) {
      h = frameHeader(b, i);
      if (h) first = i;
    }
    if (!h) return undefined;
    const frames = countedFrames(b, first, h);
    if (frames !== undefined) return round((frames * h.samplesPerFrame) / h.sampleRate);
    const id3v1 = this.tail.length === 128 && this.tail.toString('latin1', 0, 3) === 'TAG' ? 128 : 0;
    const audioBytes = totalSize - (this.audio.start + first) - id3v1;
    return round((audioBytes * 8) / h.bitrate);
  }
}

/** Length of the ID3v2 tag that starts the file (0 when there is none). */
function id3v2Length(h: Buffer): number {
  if (h.toString('latin1', 0, 3) !== 'ID3') return 0;
  // Four 7-bit bytes ("syncsafe"); a footer of 10 more bytes when flag 0x10 is set.
  const size = ((h[6]! & 0x7f) << 21) | ((h[7]! & 0x7f) << 14) | ((h[8]! & 0x7f) << 7) | (h[9]! & 0x7f);
  return 10 + size + (h[5]! & 0x10 ? 10 : 0);
}

/** Frame count from a Xing/Info or VBRI header in the first frame, if it has one. */
function countedFrames(b: Buffer, at: number, h: FrameHeader): number | undefined {
  const sideInfo = h.version === 3 ? (h.mono ? 17 : 32) : h.mono ? 9 : 17;
  const xing = at + 4 + sideInfo;
  const tag = b.toString('latin1', xing, xing + 4);
  if ((tag === 'Xing' || tag === 'Info') && xing + 12 <= b.length) {
    const flags = b.readUInt32BE(xing + 4);
    if (flags & 1) {
      const frames = b.readUInt32BE(xing + 8);
      return frames > 0 ? frames : undefined;
    }
    return undefined;
  }
  const vbri = at + 4 + 32;
  if (b.toString('latin1', vbri, vbri + 4) === 'VBRI' && vbri + 18 <= b.length) {
    const frames = b.readUInt32BE(vbri + 14);
    return frames > 0 ? frames : undefined;
  }
  return undefined;
}
