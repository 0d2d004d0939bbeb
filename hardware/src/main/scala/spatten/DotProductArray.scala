package spatten

import chisel3._
import chisel3.util._

/** The query of one request: `d` elements (1..maxHeadDim) of `q`; elements `>= d` are
  * ignored. */
class DotQuery(p: SpAttenParams) extends Bundle {
  val q = Vec(p.maxHeadDim, SInt(p.dataBits.W))
  val d = UInt(p.dimBits.W)
}

/** A beat of up to `keysPerCycle` key rows, in order: `k(i)` for `i < count` (`count` in
  * 1..[[DotProductArray]]`.io.keysPerBeat`); elements `>= d` are ignored. `last`: the
  * beat holds the pass's last key (carried to the matching score beat). */
class DotKeys(p: SpAttenParams) extends Bundle {
  val k     = Vec(p.keysPerCycle, Vec(p.maxHeadDim, SInt(p.dataBits.W)))
  val count = UInt(log2Ceil(p.keysPerCycle + 1).W)
  val last  = Bool()
}

/** The exact scores `s(i) = sum_{e<d} q_e * k(i)_e` of one key beat (`i < count`), with the
  * beat's `last`. */
class DotScores(p: SpAttenParams) extends Bundle {
  val s     = Vec(p.keysPerCycle, SInt(DotProductArray.scoreBits(p).W))
  val count = UInt(log2Ceil(p.keysPerCycle + 1).W)
  val last  = Bool()
}

/** The query-key dot-product array: `lanes` 16x16-bit signed multipliers and a segmented
  * adder tree (SPEC.md section 2, step 1).
  *
  * Protocol:
  *  - `query` loads the query and `d`; it is accepted only when no key is in flight in
  *    the array (scores already computed may still wait in the output register).
  *    `keysPerBeat` (valid from the cycle after the load) is the most keys a beat may hold
  *    for that `d`.
  *  - `keys` is a stream of key beats; each produces one score beat on `scores`, in order,
  *    with the same `count` and the beat's `last` copied. Keys are accepted only after a
  *    query was loaded.
  *  - All streams are ready/valid with back-pressure (a full, non-ready output stalls the
  *    array).
  *
  * Throughput: with `D'` = `d` rounded up to a power of two, the array takes
  * `min(keysPerCycle, lanes / D')` keys a cycle when `D' <= lanes`: key `i` of the beat
  * occupies lanes `[i*D', (i+1)*D')` (the query replicated into every segment), and the
  * binary adder tree over the lanes gives the sum of that segment at its level `log2 D'`
  * (a segmented tree: the same adders, the output taken at the level of the segment
  * size). When `D' > lanes` a key row is split into `ceil(d / lanes)` chunks, one chunk a
  * cycle, accumulated (one key every `ceil(d / lanes)` cycles). Latency: 2 cycles from the
  * beat's (last chunk's) acceptance to its scores (multiplier register, then adder tree and
  * output register).
  *
  * @param lanes multipliers; `p.dotLanes` normally. A smaller value makes a test variant
  *              (named `DotProductArrayLanes<n>`) that exercises the chunked path on
  *              the small presets.
  */
class DotProductArray(p: SpAttenParams, lanes: Int) extends Module {
  def this(p: SpAttenParams) = this(p, p.dotLanes)
  require(lanes >= 1, s"lanes must be positive, got $lanes")
  override def desiredName: String = if (lanes == p.dotLanes) "DotProductArray" else s"DotProductArrayLanes$lanes"

  private val K = p.keysPerCycle
  val io = IO(new Bundle {
    val query       = Flipped(Decoupled(new DotQuery(p)))
    val keys        = Flipped(Decoupled(new DotKeys(p)))
    val scores      = Decoupled(new DotScores(p))
    val keysPerBeat = Output(UInt(log2Ceil(K + 1).W))
  })

  /** Elements of one chunk on the chunked path. */
  private val used   = math.min(lanes, p.maxHeadDim)
  private val chunks = (p.maxHeadDim + used - 1) / used
  /** Multipliers in use: the chunked path's `used`, or K segments of the largest D'. */
  private val phys   = math.min(lanes, math.max(used, K * (1 << log2Ceil(p.maxHeadDim))))
  /** Tree levels kept: segments of up to 2^levels lanes. */
  private val levels = log2Ceil(phys)
  private val prodBits = 2 * p.dataBits
  private val sumBits  = DotProductArray.scoreBits(p)
  private val cBits    = log2Ceil(K + 1)
  private val modes    = DotProductArray.modes(p, lanes)
  private val chunkedMode = modes.length // mode index of the chunked path

  // ---- query registers (elements >= d zeroed at load, so they contribute nothing) ----
  val q       = Reg(Vec(chunks * used, SInt(p.dataBits.W)))
  val nChunks = RegInit(1.U(log2Ceil(chunks + 1).W))
  val mode    = RegInit(0.U(log2Ceil(modes.length + 1).W))
  val perBeat = RegInit(1.U(cBits.W))
  val loaded  = RegInit(false.B)
  io.keysPerBeat := perBeat

  // ---- pipeline state ----
  val chunk      = RegInit(0.U(log2Ceil(chunks + 1).W))
  val s1Valid    = RegInit(false.B)
  val s1Prods    = Reg(Vec(phys, SInt(prodBits.W)))
  val s1First    = Reg(Bool())
  val s1LastChunk = Reg(Bool())
  val s1Count    = Reg(UInt(cBits.W))
  val s1Last     = Reg(Bool())
  val acc        = Reg(SInt(sumBits.W))
  val outValid   = RegInit(false.B)
  val outBits    = Reg(new DotScores(p))

  val stall = outValid && !io.scores.ready

  io.query.ready := !s1Valid && chunk === 0.U
  when(io.query.fire) {
    for (i <- 0 until chunks * used) {
      q(i) := (if (i < p.maxHeadDim) Mux(i.U < io.query.bits.d, io.query.bits.q(i), 0.S) else 0.S)
    }
    // per d (constant tables): chunks, the lane layout, keys a beat
    val d = io.query.bits.d
    nChunks := VecInit(Seq.tabulate(p.maxHeadDim + 1)(d => math.max(1, (d + used - 1) / used).U(nChunks.getWidth.W)))(d)
    mode := VecInit(Seq.tabulate(p.maxHeadDim + 1)(d => DotProductArray.modeOf(p, lanes, d).U(mode.getWidth.W)))(d)
    perBeat := VecInit(Seq.tabulate(p.maxHeadDim + 1)(d => DotProductArray.keysPerBeat(p, lanes, d).U(cBits.W)))(d)
    loaded := true.B
  }

  // ---- stage 0: issue one beat (or one chunk of its single key) ----
  val issue = io.keys.valid && loaded && !stall && !io.query.fire
  val isLastChunk = chunk === nChunks - 1.U
  io.keys.ready := loaded && !stall && !io.query.fire && isLastChunk
  assert(!(io.keys.valid && loaded) || (io.keys.bits.count >= 1.U && io.keys.bits.count <= perBeat),
    "DotProductArray: a key beat with count outside 1..keysPerBeat")

  val kPadded = io.keys.bits.k.map(row => row ++ Seq.fill(chunks * used - p.maxHeadDim)(0.S(p.dataBits.W)))
  /** Lane `l`'s (query, key) element under each mode, the chunked path last. */
  private def laneInputs(l: Int): (SInt, SInt) = {
    val opts = modes.map { t =>
      val s = 1 << t
      val key = l / s
      if (key < K && l % s < p.maxHeadDim) (q(l % s), kPadded(key)(l % s)) else (0.S(p.dataBits.W), 0.S(p.dataBits.W))
    } :+ {
      if (l < used) {
        if (chunks == 1) (q(l), kPadded(0)(l))
        else (VecInit(Seq.tabulate(chunks)(c => q(c * used + l)))(chunk),
              VecInit(Seq.tabulate(chunks)(c => kPadded(0)(c * used + l)))(chunk))
      } else (0.S(p.dataBits.W), 0.S(p.dataBits.W))
    }
    (VecInit(opts.map(_._1))(mode), VecInit(opts.map(_._2))(mode))
  }

  when(!stall) {
    s1Valid := issue
    when(issue) {
      s1Prods := VecInit(Seq.tabulate(phys) { l => val (a, b) = laneInputs(l); a * b })
      s1First := chunk === 0.U
      s1LastChunk := isLastChunk
      s1Count := io.keys.bits.count
      s1Last := io.keys.bits.last
      chunk := Mux(isLastChunk, 0.U, chunk + 1.U)
    }
  }

  // ---- stage 1: segmented adder tree, accumulation over chunks ----
  val tree: Seq[Seq[SInt]] = {
    val padded = s1Prods.map(_.pad(sumBits)) ++ Seq.fill((1 << levels) - phys)(0.S(sumBits.W))
    Iterator.iterate(padded.toIndexedSeq)(lv => lv.grouped(2).map(pr => (pr(0) +& pr(1))(sumBits - 1, 0).asSInt).toIndexedSeq)
      .take(levels + 1).toSeq
  }
  /** Key `i`'s segment sum under each mode (the chunked path: the chunk's total). */
  private def segSum(i: Int): SInt = {
    val opts = modes.map(t => if (i < tree(t).length) tree(t)(i) else 0.S(sumBits.W)) :+
      (if (i == 0) tree(log2Ceil(used))(0) else 0.S(sumBits.W))
    VecInit(opts)(mode)
  }
  val accNext = (Mux(s1First, 0.S, acc) +& segSum(0))(sumBits - 1, 0).asSInt
  when(!stall) {
    when(s1Valid) { acc := accNext }
    outValid := s1Valid && s1LastChunk
    when(s1Valid && s1LastChunk) {
      outBits.s := VecInit(Seq.tabulate(K)(i => if (i == 0) accNext else segSum(i)))
      outBits.count := s1Count
      outBits.last := s1Last
    }
  }
  io.scores.valid := outValid
  io.scores.bits := outBits
}

object DotProductArray {
  /** Bits of an exact score: a 16x16 signed product needs 32 bits (its extreme, 2^30, is
    * positive), a sum of `maxHeadDim` of them `ceil(log2(maxHeadDim))` more. */
  def scoreBits(p: SpAttenParams): Int = 2 * p.dataBits + log2Ceil(p.maxHeadDim)

  /** The segment levels `t` (segments of `2^t` lanes) of the multi-key layouts: every
    * `D' = 2^t <= min(lanes, maxHeadDim rounded up)`. */
  def modes(p: SpAttenParams, lanes: Int): Seq[Int] =
    (0 to log2Ceil(p.maxHeadDim)).filter(t => (1 << t) <= lanes)

  /** The layout of head dimension `d`: its level's index in [[modes]], or `modes.length`
    * (the chunked path) when `D' > lanes`. */
  def modeOf(p: SpAttenParams, lanes: Int, d: Int): Int = {
    val t = log2Ceil(math.max(d, 1))
    val ms = modes(p, lanes)
    val i = ms.indexOf(t)
    if (i < 0) ms.length else i
  }

  /** Keys a beat at head dimension `d`: `min(keysPerCycle, lanes / D')`, 1 on the chunked
    * path. */
  def keysPerBeat(p: SpAttenParams, lanes: Int, d: Int): Int = {
    val dp = 1 << log2Ceil(math.max(d, 1))
    if (dp > lanes) 1 else math.min(p.keysPerCycle, lanes / dp)
  }
}
