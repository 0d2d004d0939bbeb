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

/** The fixed-point base-2 softmax of SPEC.md section 2, step 2, over up to `maxTokens`
  * scores.
  *
  * Phases of one pass:
  *  1. collect: `scores` accepted one a cycle into a buffer of `maxTokens` entries while
  *     the maximum `m` is tracked; `cfg` is sampled with the first score. The pass ends
  *     with the beat that has `last`. Scores beyond `maxTokens` are dropped (the
  *     controller never sends them: N <= maxTokens is checked at the command).
  *  2. exponent: every buffered score is read back, `d_j = m - s_j`,
  *     `t_j = (d_j * scoreScale) >> scoreShift`, `e_j = 0` if `t_j >= 2^13` else
  *     `EXP2LUT[t_j & 255] >> (t_j >> 8)`, written back over `s_j`; `E` and
  *     `max_j e_j` accumulate. The 256-entry table is built at elaboration from the
  *     SPEC formula `round_half_up(2^16 * 2^(-f/256))`. One score a cycle, 2 stages.
  *  3. reciprocal: `R = floor(2^48 / E)` by [[Reciprocal]] (2 quotient bits a cycle,
  *     25 cycles).
  *  4. summary: one beat on `summary`: `pmax = (max_j e_j * R) >> 32`, `E`, `R`, `N`.
  *  5. stream: `p_j = (e_j * R) >> 32` for `j = 0..N-1` on `probs`, `last` on the final
  *     one, one a cycle under back-pressure.
  *
  * Discard: a one-cycle `discard` pulse while the summary is offered (state summary,
  * whether or not it is taken that cycle) or while the probabilities stream drops the
  * rest of the pass and returns to idle (used to drop pass 1 when requantization
  * follows). `discard` at other times is ignored. `busy` is high from the first score
  * to the end of the pass.
  *
  * Latency for N scores after the last score: about N + 2 (exponent) + 26 (reciprocal)
  * + 1 cycles to the summary.
  */
class Softmax(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val cfg     = Input(new SoftmaxConfig)
    val scores  = Flipped(Decoupled(new SoftmaxScore(p)))
    val summary = Decoupled(new SoftmaxSummary(p))
    val probs   = Decoupled(new SoftmaxProb(p))
    val discard = Input(Bool())
    val busy    = Output(Bool())
  })

  private val scoreBits = DotProductArray.scoreBits(p)
  private val eBits     = p.probFracBits + 1
  private val idxBits   = log2Ceil(p.maxTokens).max(1)
  private val cntBits   = p.tokenIdxBits
  private val tIntLimit = 5 + p.expLutFracBits // t >= 2^13 saturates

  val sIdle :: sCollect :: sExp :: sDiv :: sSummary :: sStream :: Nil = Enum(6)
  val state = RegInit(sIdle)

  val buf     = SyncReadMem(p.maxTokens, UInt(scoreBits.W)) // s_j, then e_j
  val cfg     = Reg(new SoftmaxConfig)
  val count   = Reg(UInt(cntBits.W))   // scores received / N
  val maxS    = Reg(SInt(scoreBits.W))
  val sumE    = Reg(UInt(Softmax.sumEBits(p).W))
  val maxE    = Reg(UInt(eBits.W))
  val recip   = Reg(UInt(Softmax.recipBits(p).W))

  io.busy := state =/= sIdle

  // ---- 1. collect ----
  io.scores.ready := state === sIdle || state === sCollect
  val readAddr = Wire(UInt(idxBits.W))
  readAddr := 0.U
  val readData = buf.read(readAddr)
  val writeEn   = WireDefault(false.B)
  val writeAddr = WireDefault(0.U(idxBits.W))
  val writeData = WireDefault(0.U(scoreBits.W))
  when(writeEn) { buf.write(writeAddr, writeData) }

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
    when(first) { cfg := io.cfg }
    when(count < p.maxTokens.U || first) {
      writeEn := true.B
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
    readAddr := expIssue(idxBits - 1, 0)
    a1Valid := issue
    a1Idx := expIssue(idxBits - 1, 0)
    when(issue) { expIssue := expIssue + 1.U }
    // stage B: t from the score read last cycle
    val d = (maxS.pad(scoreBits + 1) - readData.asSInt.pad(scoreBits + 1)).asUInt(scoreBits - 1, 0)
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

  // ---- 4./5. summary, stream ----
  val shiftOut = 2 * p.probFracBits // (e * R) >> 32
  def prob(e: UInt): UInt = ((e(eBits - 1, 0) * recip) >> shiftOut)(eBits - 1, 0)

  io.summary.valid := state === sSummary
  io.summary.bits.pmax := prob(maxE)
  io.summary.bits.sumE := sumE
  io.summary.bits.recip := recip
  io.summary.bits.n := count

  val outValid = RegInit(false.B)
  val outIdx   = Reg(UInt(idxBits.W))
  val nextIdx  = Reg(UInt(cntBits.W))
  val advance  = !outValid || io.probs.ready
  when(state === sStream) {
    // the read issued this cycle returns next cycle, for the index then in the output
    readAddr := Mux(advance, nextIdx(idxBits - 1, 0), outIdx)
    when(advance) {
      outValid := nextIdx < count
      when(nextIdx < count) {
        outIdx := nextIdx(idxBits - 1, 0)
        nextIdx := nextIdx + 1.U
      }
      when(outValid && nextIdx === count) { state := sIdle } // the last beat was taken
    }
  }
  io.probs.valid := outValid
  io.probs.bits.p := prob(readData)
  io.probs.bits.idx := outIdx
  io.probs.bits.last := outIdx === count - 1.U

  when(io.summary.fire) {
    state := sStream
    nextIdx := 0.U
    outValid := false.B
  }

  when(io.discard && (state === sSummary || state === sStream)) {
    state := sIdle
    outValid := false.B
  }
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
