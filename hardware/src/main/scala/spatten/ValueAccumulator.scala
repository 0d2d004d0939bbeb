package spatten

import chisel3._
import chisel3.util._

/** One selected value row with its probability (SPEC.md section 2, step 6). `last` marks
  * the final row of the selection. An empty selection (M = 0) is sent as one beat with
  * `empty` and `last` set; `p` and `v` of that beat are ignored. */
class ValueRow(params: SpAttenParams) extends Bundle {
  val p     = UInt((params.probFracBits + 1).W)
  val v     = Vec(params.maxHeadDim, SInt(params.dataBits.W))
  val last  = Bool()
  val empty = Bool()
}

/** The result of one selection: `o_i = sum_j p_j * v_ji` for `i < d` (zero beyond), and
  * the head-importance contribution `sum_{i<d} (|o_i| >> 16)` (SPEC.md section 2, step
  * 7; the datapath adds it, saturating, to the 48-bit head importance). */
class ValueResult(params: SpAttenParams) extends Bundle {
  val o       = Vec(params.maxHeadDim, SInt(64.W))
  val headImp = UInt(64.W)
}

/** The probability x value array: `dotLanes` 17x16-bit multipliers and `maxHeadDim`
  * exact 64-bit signed accumulators.
  *
  * Protocol: `d` (1..maxHeadDim) must be stable from the first row of a selection to its
  * result. `rows` is ready/valid; a row is split into `ceil(d / L)` chunks of
  * `L = min(dotLanes, maxHeadDim)` elements, one chunk a cycle, so one row every
  * `ceil(d / L)` cycles. After the row with `last` has been accepted, no row is accepted
  * until the result has left on `result` (one beat, ready/valid); the accumulators are
  * then cleared for the next selection. Latency from the last row to the result: 3
  * cycles (multiplier register, accumulate, result register).
  */
class ValueAccumulator(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val d      = Input(UInt(p.dimBits.W))
    val rows   = Flipped(Decoupled(new ValueRow(p)))
    val result = Decoupled(new ValueResult(p))
  })

  private val lanes    = math.min(p.dotLanes, p.maxHeadDim)
  private val chunks   = (p.maxHeadDim + lanes - 1) / lanes
  private val pBits    = p.probFracBits + 1
  private val prodBits = pBits + p.dataBits + 1 // unsigned 17 x signed 16, exact

  val acc       = RegInit(VecInit(Seq.fill(chunks * lanes)(0.S(64.W))))
  val chunk     = RegInit(0.U(log2Ceil(chunks + 1).W))
  val closing   = RegInit(false.B) // the last row was accepted; waiting for the result
  val s1Valid   = RegInit(false.B)
  val s1Prods   = Reg(Vec(lanes, SInt(prodBits.W)))
  val s1Chunk   = Reg(UInt(log2Ceil(chunks + 1).W))
  val s1Last    = RegInit(false.B) // final chunk of the final row
  val finishing = RegInit(false.B) // the final chunk is being accumulated
  val outValid  = RegInit(false.B)
  val out       = Reg(new ValueResult(p))

  val table = VecInit(Seq.tabulate(p.maxHeadDim + 1)(d => math.max(1, (d + lanes - 1) / lanes).U(chunk.getWidth.W)))
  val nChunks = table(io.d)
  val isLastChunk = chunk === nChunks - 1.U || io.rows.bits.empty

  // ---- stage 0: one chunk of the row at the head of `rows` ----
  val issue = io.rows.valid && !closing
  io.rows.ready := !closing && isLastChunk
  val vPadded = io.rows.bits.v ++ Seq.fill(chunks * lanes - p.maxHeadDim)(0.S(p.dataBits.W))
  val vMasked = VecInit(vPadded.zipWithIndex.map { case (v, i) =>
    Mux(i.U < io.d && !io.rows.bits.empty, v, 0.S) })
  val vChunk = if (chunks == 1) vMasked else VecInit(Seq.tabulate(lanes)(l =>
    VecInit(Seq.tabulate(chunks)(c => vMasked(c * lanes + l)))(chunk)))
  val pSigned = Cat(0.U(1.W), io.rows.bits.p).asSInt

  s1Valid := issue
  s1Last := issue && isLastChunk && io.rows.bits.last
  when(issue) {
    s1Prods := VecInit(vChunk.map(v => pSigned * v))
    s1Chunk := chunk
    chunk := Mux(isLastChunk, 0.U, chunk + 1.U)
    when(isLastChunk && io.rows.bits.last) { closing := true.B }
  }

  // ---- stage 1: accumulate ----
  when(s1Valid) {
    for (c <- 0 until chunks; l <- 0 until lanes) {
      when(s1Chunk === c.U) { acc(c * lanes + l) := acc(c * lanes + l) + s1Prods(l) }
    }
  }
  finishing := s1Valid && s1Last

  // ---- stage 2: result ----
  when(finishing) {
    val o = VecInit(acc.take(p.maxHeadDim))
    out.o := o
    out.headImp := VecInit(o.map(x => (Mux(x < 0.S, -x, x).asUInt >> p.probFracBits).pad(64))).reduceTree(_ +& _)(63, 0)
    outValid := true.B
    acc.foreach(_ := 0.S)
  }
  io.result.valid := outValid
  io.result.bits := out
  when(io.result.fire) {
    outValid := false.B
    closing := false.B
  }
}
