package spatten

import chisel3._
import chisel3.util._

/** Up to `rows` selected value rows with their probabilities (SPEC.md section 2, step 6):
  * row `i` is `(p(i), v(i))` for `i < count` (`count` in 1..rows; lanes past `count` are
  * ignored). `last` marks the beat holding the final row of the selection. An empty
  * selection (M = 0) is sent as one beat with `empty` and `last` set; its rows are ignored.
  *
  * @param rows rows a beat (`keysPerCycle` normally)
  */
class ValueBeat(params: SpAttenParams, val rows: Int) extends Bundle {
  val p     = Vec(rows, UInt((params.probFracBits + 1).W))
  val v     = Vec(rows, Vec(params.maxHeadDim, SInt(params.dataBits.W)))
  val count = UInt(log2Ceil(rows + 1).W)
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

/** The probability x value array: `lanes` 17x16-bit multipliers as `rows` row lanes of
  * `cols = min(lanes / rows, maxHeadDim)` columns, and `maxHeadDim` exact 64-bit signed
  * accumulators.
  *
  * Protocol: `d` (1..maxHeadDim) must be stable from the first beat of a selection to its
  * result. `beats` is ready/valid; the rows of a beat are split into `ceil(d / cols)`
  * chunks of `cols` elements, one chunk of every row of the beat a cycle (row lane `r`
  * multiplies row `r`), and the products of the beat's rows are summed per element
  * before they are added. So a beat of up to `rows` rows takes `ceil(d / cols)` cycles:
  * `min(rows, lanes / D')` rows a cycle for `D'` = `d` rounded up to a power of two (with
  * `lanes`, `rows` and `maxHeadDim` powers of two). Every sum is exact, so the order of the
  * adds does not change `o`. After the beat with `last` has been accepted, no beat is
  * accepted until the result has left on `result` (one beat, ready/valid); the
  * accumulators are then cleared for the next selection. Latency from the last beat to the
  * result: 3 cycles (multiplier register, accumulate, result register).
  *
  * @param lanes multipliers; `p.dotLanes` normally
  * @param rows  row lanes (rows a beat); `p.keysPerCycle` normally. Other values make a
  *              test variant (named `ValueAccumulatorLanes<lanes>` with one row lane, or
  *              `ValueAccumulatorLanes<lanes>Rows<rows>`) that exercises the chunked path
  *              on the small presets.
  */
class ValueAccumulator(p: SpAttenParams, lanes: Int, rows: Int) extends Module {
  def this(p: SpAttenParams) = this(p, p.dotLanes, p.keysPerCycle)
  def this(p: SpAttenParams, lanes: Int) = this(p, lanes, 1)
  require(rows >= 1 && lanes >= rows, s"need 1 <= rows <= lanes, got rows $rows, lanes $lanes")
  override def desiredName: String =
    if (lanes == p.dotLanes && rows == p.keysPerCycle) "ValueAccumulator"
    else if (rows == 1) s"ValueAccumulatorLanes$lanes"
    else s"ValueAccumulatorLanes${lanes}Rows$rows"

  val io = IO(new Bundle {
    val d      = Input(UInt(p.dimBits.W))
    val beats  = Flipped(Decoupled(new ValueBeat(p, rows)))
    val result = Decoupled(new ValueResult(p))
  })

  private val used     = math.min(lanes / rows, p.maxHeadDim)
  private val chunks   = (p.maxHeadDim + used - 1) / used
  private val pBits    = p.probFracBits + 1
  private val prodBits = pBits + p.dataBits + 1 // unsigned 17 x signed 16, exact
  private val sumBits  = prodBits + log2Ceil(rows + 1)

  val acc       = RegInit(VecInit(Seq.fill(chunks * used)(0.S(64.W))))
  val chunk     = RegInit(0.U(log2Ceil(chunks + 1).W))
  val closing   = RegInit(false.B) // the last beat was accepted; waiting for the result
  val s1Valid   = RegInit(false.B)
  val s1Prods   = Reg(Vec(rows, Vec(used, SInt(prodBits.W))))
  val s1Chunk   = Reg(UInt(log2Ceil(chunks + 1).W))
  val s1Last    = RegInit(false.B) // final chunk of the final beat
  val finishing = RegInit(false.B) // the final chunk is being accumulated
  val outValid  = RegInit(false.B)
  val out       = Reg(new ValueResult(p))

  val table = VecInit(Seq.tabulate(p.maxHeadDim + 1)(d => math.max(1, (d + used - 1) / used).U(chunk.getWidth.W)))
  val nChunks = table(io.d)
  val isLastChunk = chunk === nChunks - 1.U || io.beats.bits.empty

  // ---- stage 0: one chunk of every row of the beat at the head of `beats` ----
  val issue = io.beats.valid && !closing
  io.beats.ready := !closing && isLastChunk
  s1Valid := issue
  s1Last := issue && isLastChunk && io.beats.bits.last
  when(issue) {
    for (r <- 0 until rows) {
      val live = r.U < io.beats.bits.count && !io.beats.bits.empty
      val vPadded = io.beats.bits.v(r) ++ Seq.fill(chunks * used - p.maxHeadDim)(0.S(p.dataBits.W))
      val vMasked = VecInit(vPadded.zipWithIndex.map { case (v, i) => Mux(i.U < io.d && live, v, 0.S) })
      val vChunk = if (chunks == 1) vMasked else VecInit(Seq.tabulate(used)(l =>
        VecInit(Seq.tabulate(chunks)(c => vMasked(c * used + l)))(chunk)))
      val pSigned = Cat(0.U(1.W), io.beats.bits.p(r)).asSInt
      s1Prods(r) := VecInit(vChunk.map(v => pSigned * v))
    }
    s1Chunk := chunk
    chunk := Mux(isLastChunk, 0.U, chunk + 1.U)
    when(isLastChunk && io.beats.bits.last) { closing := true.B }
  }

  // ---- stage 1: the beat's products summed per element, accumulated ----
  val s1Sums = VecInit(Seq.tabulate(used)(l =>
    VecInit(Seq.tabulate(rows)(r => s1Prods(r)(l).pad(sumBits))).reduceTree(_ +& _)))
  when(s1Valid) {
    for (c <- 0 until chunks; l <- 0 until used) {
      when(s1Chunk === c.U) { acc(c * used + l) := acc(c * used + l) + s1Sums(l) }
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
