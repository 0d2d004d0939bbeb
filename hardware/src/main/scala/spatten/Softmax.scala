package spatten

import chisel3._
import chisel3.util._

/** One score into the softmax; `last` ends the pass. */
class SoftmaxScore(p: SpAttenParams) extends Bundle {
  val s    = SInt(DotProductArray.scoreBits(p).W)
  val last = Bool()
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

/** One probability `p_j` (17 bits, 16 fractional) at position `idx`; `last` on `j = N-1`. */
class SoftmaxProb(params: SpAttenParams) extends Bundle {
  val p    = UInt((params.probFracBits + 1).W)
  val idx  = UInt(log2Ceil(params.maxTokens).max(1).W)
  val last = Bool()
}

/** Starts the probability stream of a finished pass: its score bank, `N` and `R`
  * (as its summary gave them). */
class SoftmaxStreamCmd(p: SpAttenParams) extends Bundle {
  val bank  = UInt(1.W)
  val n     = UInt(p.tokenIdxBits.W)
  val recip = UInt(Softmax.recipBits(p).W)
}

/** The fixed-point base-2 softmax of SPEC.md section 2, step 2, over up to `maxTokens`
  * scores, with two score banks so that one request's probabilities stream out while the
  * next request's scores come in.
  *
  * The pass side (one pass at a time):
  *  1. collect: `scores` accepted one a cycle into bank `bank` (sampled, with `cfg`, at the
  *     first score) while the maximum `m` is tracked. The pass ends with the beat that has
  *     `last`. Scores beyond `maxTokens` are dropped (the controller never sends them:
  *     N <= maxTokens is checked at the command).
  *  2. exponent: every buffered score is read back, `d_j = m - s_j`,
  *     `t_j = (d_j * scoreScale) >> scoreShift`, `e_j = 0` if `t_j >= 2^13` else
  *     `EXP2LUT[t_j & 255] >> (t_j >> 8)`, written back over `s_j`; `E` and
  *     `max_j e_j` accumulate. The 256-entry table is built at elaboration from the
  *     SPEC formula `round_half_up(2^16 * 2^(-f/256))`. One score a cycle, 2 stages.
  *  3. reciprocal: `R = floor(2^48 / E)` by [[Reciprocal]] (2 quotient bits a cycle,
  *     25 cycles).
  *  4. summary: one beat on `summary`: `pmax = (max_j e_j * R) >> 32`, `E`, `R`, `N`.
  *     Taking it ends the pass; the bank keeps the `e_j`.
  *
  * The stream side, independent of the pass side: a `stream` command names a bank holding
  * a finished pass, with its `N` (at least 1: the pass's own count) and `R`; `p_j = (e_j * R) >> 32` for `j = 0..N-1` leave
  * on `probs`, `last` on the final one, one a cycle under back-pressure. A pass whose
  * summary was taken and that is not streamed (pass 1 followed by requantization) is
  * simply overwritten by a later pass.
  *
  * The user keeps the two sides on different banks (a pass must not collect into the bank
  * being streamed); a simulation assertion checks it. `busy` is high from the first score
  * to the summary taken; `streaming` while a stream runs.
  *
  * Latency for N scores after the last score: about N + 2 (exponent) + 26 (reciprocal)
  * + 1 cycles to the summary.
  */
class Softmax(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val cfg       = Input(new SoftmaxConfig)
    val bank      = Input(UInt(1.W))
    val scores    = Flipped(Decoupled(new SoftmaxScore(p)))
    val summary   = Decoupled(new SoftmaxSummary(p))
    val stream    = Flipped(Decoupled(new SoftmaxStreamCmd(p)))
    val probs     = Decoupled(new SoftmaxProb(p))
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
  val bank    = RegInit(0.U(1.W))       // the pass side's bank
  val count   = Reg(UInt(cntBits.W))   // scores received / N
  val maxS    = Reg(SInt(scoreBits.W))
  val sumE    = Reg(UInt(Softmax.sumEBits(p).W))
  val maxE    = Reg(UInt(eBits.W))
  val recip   = Reg(UInt(Softmax.recipBits(p).W))

  // stream side
  val streaming = RegInit(false.B)
  val sBank     = RegInit(0.U(1.W))
  val sCount    = Reg(UInt(cntBits.W))
  val sRecip    = Reg(UInt(Softmax.recipBits(p).W))

  io.busy := state =/= sIdle
  io.streaming := streaming

  // ---- the two banks: s_j, then e_j ----
  val bufs = Seq.fill(2)(SyncReadMem(p.maxTokens, UInt(scoreBits.W)))
  val passRead   = WireDefault(0.U(idxBits.W))
  val streamRead = WireDefault(0.U(idxBits.W))
  val writeEn    = WireDefault(false.B)
  val writeBank  = WireDefault(bank)
  val writeAddr  = WireDefault(0.U(idxBits.W))
  val writeData  = WireDefault(0.U(scoreBits.W))
  val rd = bufs.zipWithIndex.map { case (m, b) =>
    val passOwns = state === sExp && bank === b.U
    val data = m.read(Mux(passOwns, passRead, streamRead))
    when(writeEn && writeBank === b.U) { m.write(writeAddr, writeData) }
    data
  }
  val passData   = Mux(bank === 1.U, rd(1), rd(0))
  val streamData = Mux(sBank === 1.U, rd(1), rd(0))
  assert(!(streaming && state =/= sIdle && bank === sBank), "Softmax: a pass uses the bank being streamed")
  assert(!(io.scores.fire && state === sIdle && io.bank === Mux(io.stream.fire, io.stream.bits.bank, sBank) &&
    (streaming || io.stream.fire)), "Softmax: a pass starts in the bank being streamed")

  // ---- 1. collect ----
  io.scores.ready := state === sIdle || state === sCollect

  // exponent-phase pipeline registers (declared here: reset on a new pass)
  val expIssue   = Reg(UInt(cntBits.W))
  val a1Valid    = RegInit(false.B)  // the read of a1Idx is in flight (data next cycle)
  val a1Idx      = Reg(UInt(idxBits.W))
  val a2Valid    = RegInit(false.B)  // t computed for a2Idx
  val a2Idx      = Reg(UInt(idxBits.W))
  val a2T        = Reg(UInt(tIntLimit.W))
  val a2Sat      = Reg(Bool())

  when(io.scores.fire) {
    val first = state === sIdle
    when(first) {
      cfg := io.cfg
      bank := io.bank
    }
    when(count < p.maxTokens.U || first) {
      writeEn := true.B
      writeBank := Mux(first, io.bank, bank)
      writeAddr := Mux(first, 0.U, count(idxBits - 1, 0))
      writeData := io.scores.bits.s.asUInt
    }
    val newCount = Mux(first, 1.U, Mux(count < p.maxTokens.U, count + 1.U, count))
    count := newCount
    maxS := Mux(first || io.scores.bits.s > maxS, io.scores.bits.s, maxS)
    state := Mux(io.scores.bits.last, sExp, sCollect)
    when(io.scores.bits.last) {
      expIssue := 0.U
      a1Valid := false.B
      a2Valid := false.B
      sumE := 0.U
      maxE := 0.U
    }
  }

  // ---- 2. exponent ----
  val lut = VecInit(Softmax.exp2Table(p).map(_.U(eBits.W)))
  when(state === sExp) {
    // stage A: issue the read of score expIssue
    val issue = expIssue < count
    passRead := expIssue(idxBits - 1, 0)
    a1Valid := issue
    a1Idx := expIssue(idxBits - 1, 0)
    when(issue) { expIssue := expIssue + 1.U }
    // stage B: t from the score read last cycle
    val d = (maxS.pad(scoreBits + 1) - passData.asSInt.pad(scoreBits + 1)).asUInt(scoreBits - 1, 0)
    val t = (d * cfg.scoreScale) >> cfg.scoreShift
    a2Valid := a1Valid
    a2Idx := a1Idx
    a2T := t(tIntLimit - 1, 0)
    a2Sat := (t >> tIntLimit).orR
    // stage C: e from t, written back over the score
    val e = Mux(a2Sat, 0.U, lut(a2T(p.expLutFracBits - 1, 0)) >> a2T(tIntLimit - 1, p.expLutFracBits))
    when(a2Valid) {
      writeEn := true.B
      writeAddr := a2Idx
      writeData := e
      sumE := sumE + e
      maxE := Mux(e > maxE, e, maxE)
    }
    when(!issue && !a1Valid && a2Valid && a2Idx === count - 1.U) { state := sDiv }
  }

  // ---- 3. reciprocal ----
  val divider = Module(new Reciprocal(Softmax.sumEBits(p), p.recipShift, 2))
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

  // ---- 5. stream ----
  val outValid = RegInit(false.B)
  val outIdx   = Reg(UInt(idxBits.W))
  val nextIdx  = Reg(UInt(cntBits.W))
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
    // the read issued this cycle returns next cycle, for the index then in the output
    streamRead := Mux(advance, nextIdx(idxBits - 1, 0), outIdx)
    when(advance) {
      outValid := nextIdx < sCount
      when(nextIdx < sCount) {
        outIdx := nextIdx(idxBits - 1, 0)
        nextIdx := nextIdx + 1.U
      }
      when(outValid && nextIdx === sCount) { streaming := false.B } // the last beat was taken
    }
  }
  io.probs.valid := outValid
  io.probs.bits.p := prob(streamData, sRecip)
  io.probs.bits.idx := outIdx
  io.probs.bits.last := outIdx === sCount - 1.U
}

object Softmax {
  /** Bits of `E = sum_j e_j <= maxTokens * 2^16`. */
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
