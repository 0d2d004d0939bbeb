package spatten

import chisel3._
import chisel3.util._

/** A beat of up to `keysPerCycle` scores of consecutive positions into the softmax:
  * `s(i)` for `i < count` (`count` in 1..keysPerCycle); `last` ends the pass. A beat must
  * not cross a multiple of `keysPerCycle` positions (the user aligns them: a beat starting
  * at position `j` holds at most `K - j % K` scores), so it lies in one bank row. */
class SoftmaxScores(p: SpAttenParams) extends Bundle {
  val s     = Vec(p.keysPerCycle, SInt(DotProductArray.scoreBits(p).W))
  val count = UInt(log2Ceil(p.keysPerCycle + 1).W)
  val last  = Bool()
}

/** Per-request softmax constants (SPEC.md section 2): `t = (d * scoreScale) >> scoreShift`. */
class SoftmaxConfig extends Bundle {
  val scoreScale = UInt(16.W)
  val scoreShift = UInt(6.W)
}

/** The first beat of a finished pass: `pmax = max_j p_j`, `sumE = E`, `recip = R`,
  * `n` = number of scores. */
class SoftmaxSummary(p: SpAttenParams) extends Bundle {
  val pmax  = UInt((p.probFracBits + 1).W)
  val sumE  = UInt(Softmax.sumEBits(p).W)
  val recip = UInt(Softmax.recipBits(p).W)
  val n     = UInt(p.tokenIdxBits.W)
}

/** Up to [[Softmax.streamLanes]] `C` probabilities `p_j` (17 bits, 16 fractional) of
  * consecutive positions: `p(i)` is `p_{idx + i}` for `i < count` (`count` in 1..C; lanes
  * past `count` read zero). `idx` is a multiple of `C` (beats are aligned), `last` on the
  * beat holding `j = N-1`. */
class SoftmaxProbs(params: SpAttenParams) extends Bundle {
  val p     = Vec(Softmax.streamLanes(params), UInt((params.probFracBits + 1).W))
  val idx   = UInt(log2Ceil(params.maxTokens).max(1).W)
  val count = UInt(log2Ceil(Softmax.streamLanes(params) + 1).W)
  val last  = Bool()
}

/** Starts the probability stream of a finished pass: its score bank, `N` and `R`
  * (as its summary gave them). */
class SoftmaxStreamCmd(p: SpAttenParams, banks: Int = 2) extends Bundle {
  val bank  = UInt(Softmax.bankBits(banks).W)
  val n     = UInt(p.tokenIdxBits.W)
  val recip = UInt(Softmax.recipBits(p).W)
}

/** The fixed-point base-2 softmax of SPEC.md section 2, step 2, over up to `maxTokens`
  * scores, with `banks` banks (two by default; the controller has one a token-list slot)
  * so that one request's probabilities stream out while the next requests' scores come in.
  *
  * The pass side (one pass at a time):
  *  1. collect: `scores` accepted a beat (up to `keysPerCycle`) a cycle into bank `bank`
  *     (sampled, with `cfg`, at the first beat) while the running maximum is tracked (over
  *     the beat: a prefix maximum), and each score's exponent is computed at once against
  *     the running maximum *including it*:
  *     `d_j = m_j - s_j`, `t_j = (d_j * scoreScale) >> scoreShift`, `e_j = 0` if
  *     `t_j >= 2^13` else `EXP2LUT[t_j & 255] >> (t_j >> 8)`. Let `k` be the position where
  *     the final maximum `m` first appeared: every `e_j` with `j >= k` was computed against
  *     `m` and is final, and `E` and `max_j e_j` of those accumulate as they come (they
  *     restart whenever the running maximum rises; a beat's scores use one table each). The 256-entry table is built at
  *     elaboration from the SPEC formula `round_half_up(2^16 * 2^(-f/256))`. The pass ends
  *     with the beat that has `last`. Scores beyond `maxTokens` are dropped (the controller
  *     never sends them: N <= maxTokens is checked at the command).
  *  2. exponent: only the stale prefix `j < k` is read back and recomputed against `m`,
  *     [[Softmax.lanes]]`(p)` scores a cycle (the banks hold that many to a row), adding to `E`
  *     and `max_j e_j`. With the maximum at the first position (an attention sink, common
  *     in language models) this takes no cycles; at worst N / lanes.
  *  3. reciprocal: `R = floor(2^48 / E)` by [[Reciprocal]] (4 quotient bits a cycle,
  *     13 cycles).
  *  4. summary: one beat on `summary`: `pmax = (max_j e_j * R) >> 32`, `E`, `R`, `N`.
  *     Taking it ends the pass; the bank keeps the `e_j`.
  *
  * The results equal those of computing every `e_j` after the maximum is known, bit for
  * bit (the same formula on the same `d_j`).
  *
  * The stream side, independent of the pass side: a `stream` command names a bank holding
  * a finished pass, with its `N` (at least 1: the pass's own count) and `R`;
  * `p_j = (e_j * R) >> 32` for `j = 0..N-1` leave on `probs`, in order, up to
  * [[Softmax.streamLanes]] `C = min(keysPerCycle, lanes)` a cycle under back-pressure: beat
  * `b` holds positions `b*C .. min(b*C + C, N) - 1` (one exponent row read a cycle; `C`
  * divides the row), `last` on the final beat. A pass whose summary was taken and that is not streamed
  * (pass 1 followed by requantization) is simply overwritten by a later pass.
  *
  * Each bank is a score memory (written by collect, read by the exponent phase) and an
  * exponent memory (written by the pass side, read by the stream side). The user keeps the
  * two sides on different banks (a pass must not collect into the bank being streamed);
  * a simulation assertion checks it. `busy` is high from the first score to the summary
  * taken; `streaming` while a stream runs.
  *
  * Latency from the last score to the summary: `ceil(k / lanes)` + 4 + 14 (reciprocal)
  * + 1 cycles.
  */
class Softmax(p: SpAttenParams, banks: Int = 2) extends Module {
  require(banks >= 2 && Integer.bitCount(banks) == 1, s"banks must be a power of two >= 2, got $banks")
  override def desiredName: String = if (banks == 2) "Softmax" else s"SoftmaxBanks$banks"
  private val bBits = Softmax.bankBits(banks)
  val io = IO(new Bundle {
    val cfg       = Input(new SoftmaxConfig)
    val bank      = Input(UInt(bBits.W))
    val scores    = Flipped(Decoupled(new SoftmaxScores(p)))
    val summary   = Decoupled(new SoftmaxSummary(p))
    val stream    = Flipped(Decoupled(new SoftmaxStreamCmd(p, banks)))
    val probs     = Decoupled(new SoftmaxProbs(p))
    val busy      = Output(Bool())
    val streaming = Output(Bool())
  })

  private val scoreBits = DotProductArray.scoreBits(p)
  private val eBits     = p.probFracBits + 1
  private val idxBits   = log2Ceil(p.maxTokens).max(1)
  private val cntBits   = p.tokenIdxBits
  private val tIntLimit = 5 + p.expLutFracBits // t >= 2^13 saturates

  val sIdle :: sCollect :: sExp :: sDiv :: sSummary :: Nil = Enum(5)
  val state = RegInit(sIdle)

  val cfg     = Reg(new SoftmaxConfig)
  val bank    = RegInit(0.U(bBits.W))   // the pass side's bank
  val count   = Reg(UInt(cntBits.W))   // scores received / N
  val maxS    = Reg(SInt(scoreBits.W))
  val maxPos  = Reg(UInt(idxBits.W))    // k: where the running maximum first appeared
  val sumE    = Reg(UInt(Softmax.sumEBits(p).W))
  val maxE    = Reg(UInt(eBits.W))
  val accValid = RegInit(false.B)       // sumE / maxE hold the final e_j of positions >= accPos
  val accPos  = Reg(UInt(idxBits.W))
  val recip   = Reg(UInt(Softmax.recipBits(p).W))

  // stream side
  val streaming = RegInit(false.B)
  val sBank     = RegInit(0.U(bBits.W))
  val sCount    = Reg(UInt(cntBits.W))
  val sRecip    = Reg(UInt(Softmax.recipBits(p).W))

  io.busy := state =/= sIdle
  io.streaming := streaming

  // ---- the two banks: scores s_j and exponents e_j, L = Softmax.lanes(p) to a row ----
  private val L        = Softmax.lanes(p)
  private val laneBits = log2Ceil(L)
  private val rows     = (p.maxTokens + L - 1) / L
  private val rowBits  = log2Ceil(rows).max(1)
  def rowOf(j: UInt): UInt = (j >> laneBits)(rowBits - 1, 0)
  def laneOf(j: UInt): UInt = j(laneBits - 1, 0)
  def oneLane(j: UInt): Seq[Bool] = (0 until L).map(i => laneOf(j) === i.U)

  val sBufs = Seq.fill(banks)(SyncReadMem(rows, Vec(L, UInt(scoreBits.W))))
  val eBufs = Seq.fill(banks)(SyncReadMem(rows, Vec(L, UInt(eBits.W))))
  val scoreRead  = WireDefault(0.U(rowBits.W))
  val streamRead = WireDefault(0.U(rowBits.W))
  val sWriteEn   = WireDefault(false.B)
  val sWriteBank = WireDefault(bank)
  val sWriteIdx  = WireDefault(0.U(idxBits.W))   // the position of the beat's first score
  val sWriteData = WireDefault(VecInit(Seq.fill(L)(0.U(scoreBits.W))))
  val sWriteMask = WireDefault(VecInit(Seq.fill(L)(false.B)))
  val eWriteEn   = WireDefault(false.B)
  val eWriteRow  = WireDefault(0.U(rowBits.W))
  val eWriteData = WireDefault(VecInit(Seq.fill(L)(0.U(eBits.W))))
  val eWriteMask = WireDefault(VecInit(Seq.fill(L)(false.B)))
  val sRd = sBufs.zipWithIndex.map { case (m, b) =>
    when(sWriteEn && sWriteBank === b.U) {
      m.write(rowOf(sWriteIdx), sWriteData, sWriteMask)
    }
    m.read(scoreRead)
  }
  val eRd = eBufs.zipWithIndex.map { case (m, b) =>
    when(eWriteEn && bank === b.U) { m.write(eWriteRow, eWriteData, eWriteMask) }
    m.read(streamRead)
  }
  val passScores = VecInit(sRd)(bank)
  val streamRow  = VecInit(eRd)(sBank)
  assert(!(streaming && state =/= sIdle && bank === sBank), "Softmax: a pass uses the bank being streamed")
  assert(!(io.scores.fire && state === sIdle && io.bank === Mux(io.stream.fire, io.stream.bits.bank, sBank) &&
    (streaming || io.stream.fire)), "Softmax: a pass starts in the bank being streamed")

  // ---- exponents: t = ((m - s) * scale) >> shift, then e from the table ----
  val lut = VecInit(Softmax.exp2Table(p).map(_.U(eBits.W)))
  /** (t's low bits, saturated) of score `s` against maximum `m`. */
  def tOf(m: SInt, s: SInt, c: SoftmaxConfig): (UInt, Bool) = {
    val d = (m.pad(scoreBits + 1) - s.pad(scoreBits + 1)).asUInt(scoreBits - 1, 0)
    val t = (d * c.scoreScale) >> c.scoreShift
    (t(tIntLimit - 1, 0), (t >> tIntLimit).orR)
  }
  def eOf(t: UInt, sat: Bool): UInt =
    Mux(sat, 0.U, lut(t(p.expLutFracBits - 1, 0)) >> t(tIntLimit - 1, p.expLutFracBits))

  // ---- collect pipeline: a beat of K scores a cycle against the running maximum ----
  private val K = p.keysPerCycle
  /** Row lane of beat lane i, for a beat starting at position j0 (no wrap: aligned). */
  val in0Valid = WireDefault(false.B)
  val in0Idx   = WireDefault(0.U(idxBits.W))                      // position of lane 0
  val in0Mask  = WireDefault(VecInit(Seq.fill(K)(false.B)))       // lanes in the beat
  val in0S     = WireDefault(VecInit(Seq.fill(K)(0.S(scoreBits.W))))
  val in0M     = WireDefault(VecInit(Seq.fill(K)(0.S(scoreBits.W)))) // running max including lane i
  val in0Pos   = WireDefault(VecInit(Seq.fill(K)(0.U(idxBits.W))))   // where it first appeared
  val in0End   = WireDefault(0.U(idxBits.W))                        // ... after the beat
  // stage 1: t
  val p1Valid = RegInit(false.B)
  val p1Idx   = Reg(UInt(idxBits.W))
  val p1Mask  = Reg(Vec(K, Bool()))
  val p1T     = Reg(Vec(K, UInt(tIntLimit.W)))
  val p1Sat   = Reg(Vec(K, Bool()))
  val p1Pos   = Reg(Vec(K, UInt(idxBits.W)))
  val p1End   = Reg(UInt(idxBits.W)) // the running maximum's position after the beat
  // the first beat of a pass uses the configuration sampled with it
  val cfgNow = Mux(state === sIdle, io.cfg, cfg)
  p1Valid := in0Valid
  p1Idx := in0Idx
  p1Mask := in0Mask
  for (i <- 0 until K) {
    val (t0, sat0) = tOf(in0M(i), in0S(i), cfgNow)
    p1T(i) := t0
    p1Sat(i) := sat0
    p1Pos(i) := in0Pos(i)
  }
  p1End := in0End
  // stage 2: e, written to the exponent memory; accumulated when final (computed against
  // the maximum the beat ends with: any earlier lane against a lower one is recomputed)
  val es = VecInit((0 until K).map(i => eOf(p1T(i), p1Sat(i))))
  val fin = VecInit((0 until K).map(i => p1Mask(i) && p1Pos(i) === p1End))
  val finE = VecInit((0 until K).map(i => Mux(fin(i), es(i), 0.U)))
  val finSum = finE.reduceTree(_ +& _)
  val finMax = finE.reduceTree((x, y) => Mux(x > y, x, y))
  when(p1Valid) {
    eWriteEn := true.B
    eWriteRow := rowOf(p1Idx)
    for (l <- 0 until L) {
      val i = (l.U(laneBits.W) - laneOf(p1Idx))(laneBits - 1, 0)
      val inBeat = l.U >= laneOf(p1Idx) && i < K.U
      eWriteData(l) := es(if (K == 1) 0.U else i(log2Ceil(K) - 1, 0))
      eWriteMask(l) := inBeat && p1Mask(if (K == 1) 0.U else i(log2Ceil(K) - 1, 0))
    }
    when(accValid && accPos === p1End) {
      sumE := sumE + finSum
      maxE := Mux(finMax > maxE, finMax, maxE)
    }.otherwise {
      // the first beat against a new running maximum (holding the maximum itself): restart
      sumE := finSum
      maxE := finMax
      accValid := true.B
      accPos := p1End
    }
  }

  // ---- recompute pipeline: L stale scores a cycle against the final maximum ----
  val expRow   = Reg(UInt(cntBits.W))   // next row to read
  val a1Valid  = RegInit(false.B)       // the read of row a1Row is in flight (data next cycle)
  val a1Row    = Reg(UInt(rowBits.W))
  val r1Valid  = RegInit(false.B)
  val r1Row    = Reg(UInt(rowBits.W))
  val r1T      = Reg(Vec(L, UInt(tIntLimit.W)))
  val r1Sat    = Reg(Vec(L, Bool()))
  val r1Mask   = Reg(Vec(L, Bool()))
  r1Valid := false.B
  when(a1Valid) {
    r1Valid := true.B
    r1Row := a1Row
    for (i <- 0 until L) {
      val (ti, si) = tOf(maxS, passScores(i).asSInt, cfg)
      r1T(i) := ti
      r1Sat(i) := si
      r1Mask(i) := Cat(a1Row, i.U(laneBits.W)) < maxPos // only the stale prefix
    }
  }
  when(r1Valid) {
    val es = VecInit((0 until L).map(i => Mux(r1Mask(i), eOf(r1T(i), r1Sat(i)), 0.U)))
    eWriteEn := true.B
    eWriteRow := r1Row
    eWriteData := es
    eWriteMask := r1Mask
    sumE := sumE + es.reduceTree(_ +& _)
    val m = es.reduceTree((x, y) => Mux(x > y, x, y))
    maxE := Mux(m > maxE, m, maxE)
  }
  assert(!(p1Valid && r1Valid), "Softmax: both exponent pipelines write in one cycle")
  assert(!(io.scores.valid && io.scores.ready) || (io.scores.bits.count >= 1.U && io.scores.bits.count <= K.U),
    "Softmax: a score beat with count outside 1..keysPerCycle")

  // ---- 1. collect ----
  io.scores.ready := state === sIdle || state === sCollect
  when(io.scores.fire) {
    val first = state === sIdle
    val j0 = Mux(first, 0.U, count(idxBits - 1, 0))
    val b = io.scores.bits
    when(first) {
      cfg := io.cfg
      bank := io.bank
      accValid := false.B
    }
    // lanes beyond maxTokens are dropped (never sent: N <= maxTokens is checked at the command)
    val base = Mux(first, 0.U, count)
    val inRange = VecInit((0 until K).map(i => i.U < b.count && base +& i.U < p.maxTokens.U))
    // the running maximum over the beat (strictly greater: the first occurrence wins)
    var m: SInt = Mux(first, b.s(0), maxS)
    var pos: UInt = Mux(first, 0.U(idxBits.W), maxPos)
    for (i <- 0 until K) {
      val rise = inRange(i) && (b.s(i) > m || (if (i == 0) first else false.B))
      m = Mux(rise, b.s(i), m)
      pos = Mux(rise, (j0 + i.U)(idxBits - 1, 0), pos)
      in0M(i) := m
      in0Pos(i) := pos
      in0S(i) := b.s(i)
    }
    when(inRange(0)) {
      sWriteEn := true.B
      sWriteBank := Mux(first, io.bank, bank)
      sWriteIdx := j0
      for (l <- 0 until L) {
        val i = (l.U(laneBits.W) - laneOf(j0))(laneBits - 1, 0)
        val ii = if (K == 1) 0.U else i(log2Ceil(K) - 1, 0)
        sWriteData(l) := b.s(ii).asUInt
        sWriteMask(l) := l.U >= laneOf(j0) && i < K.U && inRange(ii)
      }
      in0Valid := true.B
      in0Idx := j0
      in0Mask := inRange
    }
    maxS := m
    maxPos := pos
    in0End := pos
    val added = PopCount(inRange)
    count := Mux(first, added, count + added)
    state := Mux(b.last, sExp, sCollect)
    when(b.last) { expRow := 0.U; a1Valid := false.B }
  }

  // ---- 2. exponent: the stale prefix j < maxPos, L a cycle ----
  when(state === sExp) {
    // rows holding positions below maxPos; the collect pipeline (one stage) empties first
    val issue = (expRow << laneBits) < maxPos && !p1Valid
    scoreRead := expRow(rowBits - 1, 0)
    a1Valid := issue
    a1Row := expRow(rowBits - 1, 0)
    when(issue) { expRow := expRow + 1.U }
    when(!issue && !a1Valid && !r1Valid && !p1Valid) { state := sDiv }
  }

  // ---- 3. reciprocal ----
  val divider = Module(new Reciprocal(Softmax.sumEBits(p), p.recipShift, Softmax.divBitsPerCycle))
  val divStarted = RegInit(false.B)
  divider.io.in.valid := state === sDiv && !divStarted
  divider.io.in.bits := sumE
  when(divider.io.in.fire) { divStarted := true.B }
  divider.io.out.ready := state === sDiv
  when(divider.io.out.fire) {
    recip := divider.io.out.bits(Softmax.recipBits(p) - 1, 0)
    divStarted := false.B
    state := sSummary
  }

  // ---- 4. summary ----
  val shiftOut = 2 * p.probFracBits // (e * R) >> 32
  def prob(e: UInt, r: UInt): UInt = ((e(eBits - 1, 0) * r) >> shiftOut)(eBits - 1, 0)

  io.summary.valid := state === sSummary
  io.summary.bits.pmax := prob(maxE, recip)
  io.summary.bits.sumE := sumE
  io.summary.bits.recip := recip
  io.summary.bits.n := count
  when(io.summary.fire) { state := sIdle }

  // ---- 5. stream: C = streamLanes positions a beat, one exponent row read a cycle ----
  private val C       = Softmax.streamLanes(p)
  val outValid = RegInit(false.B)
  val outIdx   = Reg(UInt(idxBits.W))   // the first position of the beat in the output
  val nextIdx  = Reg(UInt(cntBits.W))   // the first position of the next beat
  val advance  = !outValid || io.probs.ready
  io.stream.ready := !streaming
  when(io.stream.fire) {
    streaming := true.B
    sBank := io.stream.bits.bank
    sCount := io.stream.bits.n
    sRecip := io.stream.bits.recip
    nextIdx := 0.U
    outValid := false.B
  }
  when(streaming) {
    // the read issued this cycle returns next cycle, for the beat then in the output
    streamRead := rowOf(Mux(advance, nextIdx(idxBits - 1, 0), outIdx))
    when(advance) {
      outValid := nextIdx < sCount
      when(nextIdx < sCount) {
        outIdx := nextIdx(idxBits - 1, 0)
        nextIdx := nextIdx + C.U
      }
      when(outValid && nextIdx >= sCount) { streaming := false.B } // the last beat was taken
    }
  }
  private val left  = sCount - outIdx             // positions from the beat's first to N
  private val beatCount = Mux(left > C.U, C.U, left)
  /** The beat's C lanes of the row: lane i of the beat is lane (idx % L) + i of the row. */
  private val rowLane0 = if (C == L) 0.U else laneOf(outIdx)
  io.probs.valid := outValid
  io.probs.bits.p := VecInit(Seq.tabulate(C)(i =>
    Mux(i.U < beatCount, prob(streamRow(rowLane0 + i.U), sRecip), 0.U)))
  io.probs.bits.idx := outIdx
  io.probs.bits.count := beatCount
  io.probs.bits.last := left <= C.U
}

object Softmax {
  /** Scores per row of the bank memories, `max(16, 8 * keysPerCycle)` (tiny and eighth
    * 16, paper 64): the stale-prefix recomputation handles this many a cycle (the summary
    * of a request whose maximum is late costs `ceil(k / lanes)` cycles, at most an eighth
    * of its key pass, which the front end waits for before the next head's keys), a
    * collect beat (at most keysPerCycle aligned scores) lies in one row, and the stream
    * reads `keysPerCycle` of them a cycle from one row. */
  def lanes(p: SpAttenParams): Int = math.max(16, 8 * p.keysPerCycle)

  /** Quotient bits a cycle of the reciprocal divider: `ceil(49 / 4) = 13` cycles. */
  val divBitsPerCycle: Int = 4

  /** Probabilities a beat of the stream: `min(keysPerCycle, lanes)` (a power of two that
    * divides a row). */
  def streamLanes(p: SpAttenParams): Int = math.min(p.keysPerCycle, lanes(p))

  /** Bits of `E = sum_j e_j <= maxTokens * 2^16`. */
  /** Bits of a bank number. */
  def bankBits(banks: Int): Int = log2Ceil(banks).max(1)
  def sumEBits(p: SpAttenParams): Int = log2Ceil(p.maxTokens.toLong * (1L << p.probFracBits) + 1)

  /** Bits of `R = floor(2^48 / E) <= 2^32` (E >= 2^16). */
  def recipBits(p: SpAttenParams): Int = p.recipShift - p.probFracBits + 1

  /** `EXP2LUT[f] = round_half_up(2^16 * 2^(-f/256))`, `f = 0..255` (SPEC.md section 2),
    * computed in exact decimal arithmetic to 40 digits so that rounding is never off. */
  def exp2Table(p: SpAttenParams): Seq[BigInt] = {
    val entries = 1 << p.expLutFracBits
    val mc = new java.math.MathContext(40)
    val one = BigDecimal(1, mc)
    Seq.tabulate(entries) { f =>
      // 2^(-f/256) = exp(-f/256 * ln 2), by the Taylor series in BigDecimal
      val x = BigDecimal(-f, mc) / BigDecimal(entries, mc) * Softmax.ln2
      var term = one
      var sum = one
      for (k <- 1 until 80) {
        term = term * x / BigDecimal(k, mc)
        sum = sum + term
      }
      val scaled = sum * BigDecimal(1L << p.probFracBits, mc)
      (scaled + BigDecimal("0.5", mc)).setScale(0, BigDecimal.RoundingMode.FLOOR).toBigInt
    }
  }

  private val ln2: BigDecimal = BigDecimal("0.6931471805599453094172321214581765680755")
}
