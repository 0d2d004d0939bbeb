package spatten

import chisel3._
import chisel3.util._

/** The query of one request: `d` elements (1..maxHeadDim) of `q`; elements `>= d` are
  * ignored. */
class DotQuery(p: SpAttenParams) extends Bundle {
  val q = Vec(p.maxHeadDim, SInt(p.dataBits.W))
  val d = UInt(p.dimBits.W)
}

/** One key row; elements `>= d` are ignored. `last` is carried to the matching score. */
class DotKey(p: SpAttenParams) extends Bundle {
  val k    = Vec(p.maxHeadDim, SInt(p.dataBits.W))
  val last = Bool()
}

/** One exact score `s = sum_{i<d} q_i * k_i`, with the key's `last`. */
class DotScore(p: SpAttenParams) extends Bundle {
  val s    = SInt(DotProductArray.scoreBits(p).W)
  val last = Bool()
}

/** The query-key dot-product array: `dotLanes` 16x16-bit signed multipliers and an adder
  * tree (SPEC.md section 2, step 1).
  *
  * Protocol:
  *  - `query` loads the query and `d`; it is accepted only when no key is in flight in
  *    the array (scores already computed may still wait in the output register).
  *  - `keys` is a stream of key rows; each produces one score on `scores`, in order,
  *    with the key's `last` copied. Keys are accepted only after a query was loaded.
  *  - All streams are ready/valid with back-pressure (a full, non-ready output stalls the
  *    array).
  *
  * Throughput: a key row is split into `ceil(d / L)` chunks of `L = min(dotLanes,
  * maxHeadDim)` elements, one chunk a cycle, so one key every `ceil(d / L)` cycles (one a
  * cycle when `dotLanes >= d`). Several keys a cycle for `dotLanes >= 2*maxHeadDim` are
  * not implemented: the extra lanes stay unused. Latency: 2 cycles from the last chunk's
  * acceptance to the score (multiplier register, then accumulator/output register).
  */
class DotProductArray(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val query  = Flipped(Decoupled(new DotQuery(p)))
    val keys   = Flipped(Decoupled(new DotKey(p)))
    val scores = Decoupled(new DotScore(p))
  })

  private val lanes  = math.min(p.dotLanes, p.maxHeadDim)
  private val chunks = (p.maxHeadDim + lanes - 1) / lanes
  private val prodBits = 2 * p.dataBits
  private val sumBits  = DotProductArray.scoreBits(p)

  // ---- query registers (elements >= d zeroed at load, so they contribute nothing) ----
  val q       = Reg(Vec(chunks * lanes, SInt(p.dataBits.W)))
  val nChunks = RegInit(1.U(log2Ceil(chunks + 1).W))
  val loaded  = RegInit(false.B)

  // ---- pipeline state ----
  val chunk      = RegInit(0.U(log2Ceil(chunks + 1).W))
  val s1Valid    = RegInit(false.B)
  val s1Prods    = Reg(Vec(lanes, SInt(prodBits.W)))
  val s1First    = Reg(Bool())
  val s1LastChunk = Reg(Bool())
  val s1KeyLast  = Reg(Bool())
  val acc        = Reg(SInt(sumBits.W))
  val outValid   = RegInit(false.B)
  val outBits    = Reg(new DotScore(p))

  val stall = outValid && !io.scores.ready

  io.query.ready := !s1Valid && chunk === 0.U
  when(io.query.fire) {
    for (i <- 0 until chunks * lanes) {
      q(i) := (if (i < p.maxHeadDim) Mux(i.U < io.query.bits.d, io.query.bits.q(i), 0.S) else 0.S)
    }
    // ceil(d / lanes), from a table over the possible d (a constant function of d)
    val table = VecInit(Seq.tabulate(p.maxHeadDim + 1)(d => math.max(1, (d + lanes - 1) / lanes).U(nChunks.getWidth.W)))
    nChunks := table(io.query.bits.d)
    loaded := true.B
  }

  // ---- stage 0: issue one chunk of the key at the head of `keys` ----
  val issue = io.keys.valid && loaded && !stall && !io.query.fire
  val isLastChunk = chunk === nChunks - 1.U
  io.keys.ready := loaded && !stall && !io.query.fire && isLastChunk

  val qChunk = if (chunks == 1) q else VecInit(Seq.tabulate(lanes)(l =>
    VecInit(Seq.tabulate(chunks)(c => q(c * lanes + l)))(chunk)))
  val kPadded = io.keys.bits.k ++ Seq.fill(chunks * lanes - p.maxHeadDim)(0.S(p.dataBits.W))
  val kChunk = if (chunks == 1) VecInit(kPadded) else VecInit(Seq.tabulate(lanes)(l =>
    VecInit(Seq.tabulate(chunks)(c => kPadded(c * lanes + l)))(chunk)))

  when(!stall) {
    s1Valid := issue
    when(issue) {
      s1Prods := VecInit(qChunk.zip(kChunk).map { case (a, b) => a * b })
      s1First := chunk === 0.U
      s1LastChunk := isLastChunk
      s1KeyLast := io.keys.bits.last
      chunk := Mux(isLastChunk, 0.U, chunk + 1.U)
    }
  }

  // ---- stage 1: adder tree and accumulation over chunks ----
  val treeSum = VecInit(s1Prods.map(_.pad(sumBits))).reduceTree(_ +& _)
  val accNext = (Mux(s1First, 0.S, acc) +& treeSum)(sumBits - 1, 0).asSInt
  when(!stall) {
    when(s1Valid) { acc := accNext }
    outValid := s1Valid && s1LastChunk
    when(s1Valid && s1LastChunk) {
      outBits.s := accNext
      outBits.last := s1KeyLast
    }
  }
  io.scores.valid := outValid
  io.scores.bits := outBits
}

object DotProductArray {
  /** Bits of an exact score: a 16x16 signed product needs 32 bits (its extreme, 2^30, is
    * positive), a sum of `maxHeadDim` of them `ceil(log2(maxHeadDim))` more. */
  def scoreBits(p: SpAttenParams): Int = 2 * p.dataBits + log2Ceil(p.maxHeadDim)
}
