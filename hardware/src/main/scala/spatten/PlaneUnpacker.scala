package spatten

import chisel3._
import chisel3.util._

/** One plane row to unpack (SPEC.md section 4).
  *
  * @param row      the row's bytes, byte 0 in bits [7:0]; only the first `stride(D, b)`
  *                 bytes matter, the rest are ignored
  * @param bits     element width b, 1..16
  * @param isSigned two's complement elements (K MSB, V planes) or unsigned (K LSB plane)
  */
class UnpackRequest(p: SpAttenParams) extends Bundle {
  val row      = UInt((p.maxRowBytes * 8).W)
  val bits     = UInt(5.W)
  val isSigned = Bool()
}

/** Unpacks one plane row into `maxHeadDim` 16-bit elements at a run-time width.
  *
  * Element `i` occupies row bits `[i*b, i*b + b)`, where row bit `n` is bit `n % 8` of
  * byte `n / 8` (SPEC.md section 4). For each element a `b`-indexed mux picks the 16-bit
  * window that starts at bit `i*b`, which is then masked to `b` bits and, when
  * `isSigned`, sign-extended from bit `b-1`. Elements whose field lies past the row read
  * zero bits; elements `i >= D` are produced too (the consumer ignores them).
  *
  * Unsigned elements are zero-extended; an unsigned 16-bit element (never used by the
  * SPEC: the LSB plane has at most 15 bits) comes out as its raw 16-bit pattern.
  *
  * Protocol: `in` and `out` are ready/valid; one register stage (a pipe queue), so one
  * row a cycle with a latency of one cycle. `bits` outside 1..16 yields zeros.
  */
class PlaneUnpacker(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val in  = Flipped(Decoupled(new UnpackRequest(p)))
    val out = Decoupled(Vec(p.maxHeadDim, SInt(p.dataBits.W)))
  })

  val unpacked = PlaneUnpacker.unpack(p, io.in.bits.row, io.in.bits.bits, io.in.bits.isSigned)
  val stage = Module(new Queue(Vec(p.maxHeadDim, SInt(p.dataBits.W)), 1, pipe = true))
  stage.io.enq.valid := io.in.valid
  stage.io.enq.bits := unpacked
  io.in.ready := stage.io.enq.ready
  io.out <> stage.io.deq
}

/** A beat of up to `keysPerCycle` plane rows to unpack, all of one plane: `rows(i)` for
  * `i < count` (as [[UnpackRequest]]'s `row`). */
class UnpackBeat(p: SpAttenParams) extends Bundle {
  val rows     = Vec(p.keysPerCycle, UInt((p.maxRowBytes * 8).W))
  val count    = UInt(log2Ceil(p.keysPerCycle + 1).W)
  val bits     = UInt(5.W)
  val isSigned = Bool()
}

/** `keysPerCycle` rows unpacked a beat: `elems(i)` for `i < count`. */
class UnpackedBeat(p: SpAttenParams) extends Bundle {
  val elems = Vec(p.keysPerCycle, Vec(p.maxHeadDim, SInt(p.dataBits.W)))
  val count = UInt(log2Ceil(p.keysPerCycle + 1).W)
}

/** `keysPerCycle` [[PlaneUnpacker]]s side by side: a beat of up to `keysPerCycle` rows of
  * one plane unpacked a cycle, each row exactly as [[PlaneUnpacker]] unpacks it (the same
  * [[PlaneUnpacker.unpack]]); one register stage (a pipe queue), latency one cycle. */
class PlaneUnpackerBeat(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val in  = Flipped(Decoupled(new UnpackBeat(p)))
    val out = Decoupled(new UnpackedBeat(p))
  })
  val stage = Module(new Queue(new UnpackedBeat(p), 1, pipe = true))
  stage.io.enq.valid := io.in.valid
  stage.io.enq.bits.elems := VecInit(io.in.bits.rows.map(r => PlaneUnpacker.unpack(p, r, io.in.bits.bits, io.in.bits.isSigned)))
  stage.io.enq.bits.count := io.in.bits.count
  io.in.ready := stage.io.enq.ready
  io.out <> stage.io.deq
}

/** The combinational unpacking and key-combining logic, usable inline. */
object PlaneUnpacker {

  /** Unpacks `maxHeadDim` elements of width `bits` (1..16) from `row`. */
  def unpack(p: SpAttenParams, row: UInt, bits: UInt, isSigned: Bool): Vec[SInt] = {
    val rowBits = p.maxRowBytes * 8
    val maxBits = p.dataBits
    // Pad so that every window [i*b, i*b + 16) exists; padding reads as zero.
    val padded = Cat(0.U((p.maxHeadDim * maxBits + maxBits).W), row)
    val mask = ((1.U((maxBits + 1).W) << bits) - 1.U)(maxBits - 1, 0)
    val signBitMask = (1.U((maxBits + 1).W) << bits) >> 1
    VecInit(Seq.tabulate(p.maxHeadDim) { i =>
      val windows = (1 to maxBits).map { b =>
        val lo = i * b
        (b.U, if (lo < rowBits) padded(lo + maxBits - 1, lo) else 0.U(maxBits.W))
      }
      val window = MuxLookup(bits, 0.U(maxBits.W))(windows)
      val field = window & mask
      val negative = isSigned && (field & signBitMask(maxBits - 1, 0)).orR
      Mux(negative, field | ~mask, field).asSInt
    })
  }

  /** Combines the key planes (SPEC.md section 1): `k = (msb << lsbBits) | lsb` when
    * `withLsb` (pass 2), else `msb << lsbBits` (pass 1). `msb` is signed, `lsb` unsigned
    * with `lsbBits` (0..15) significant bits; the result is exact when
    * `kMsbBits + lsbBits <= 16`. */
  def combineKey(msb: SInt, lsb: SInt, lsbBits: UInt, withLsb: Bool): SInt = {
    val w = msb.getWidth
    val shifted = (msb.asUInt << lsbBits)(w - 1, 0)
    val lsbMask = ((1.U((w + 1).W) << lsbBits) - 1.U)(w - 1, 0)
    (shifted | Mux(withLsb, lsb.asUInt & lsbMask, 0.U)).asSInt
  }
}
