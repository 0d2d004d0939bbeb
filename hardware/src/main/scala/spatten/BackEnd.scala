package spatten

import chisel3._
import chisel3.util._

/** Back-end states, exposed on the status bundle as their numbers (written by the
  * elaborator beside the front end's, see [[CtrlState]]). */
object BackState extends ChiselEnum {
  val idle, probs, values, result, respHeader, respWord1, respO, respIds, respGroup = Value
  /** The state names, by number. */
  def names: Seq[String] = allNames
  val stateBits: Int = getWidth
}

/** What the front end hands to the back end for one ATTEND: the request's fields the back
  * end needs, its slot, and the softmax summary of its final pass. */
class AttendJob(p: SpAttenParams) extends Bundle {
  private def w(f: String): UInt = UInt(Contract.attend(f).width.W)
  val slot        = UInt(log2Ceil(AttentionController.slots).W)
  val tag         = w("tag")
  val n           = UInt(p.tokenIdxBits.W)
  val m           = UInt(p.tokenIdxBits.W)
  val headId      = w("headId")
  val d           = w("d")
  val vBits       = w("vBits")
  val accum       = Bool()
  val vBase       = UInt(p.dramAddrBits.W)
  val startCycle  = UInt(32.W)
  val requantized = Bool()
  val pmax        = UInt((p.probFracBits + 1).W)
  val recip       = UInt(Softmax.recipBits(p).W)
  /** ATTEND_GROUP: this head's place (first, last) and the group's head count. */
  val isGroup     = Bool()
  val first       = Bool()
  val lastOfGroup = Bool()
  val heads       = UInt(Contract.attendGroup("heads").width.W)
}

/** The back end of the [[AttentionController]]: one ATTEND at a time, from its
  * probabilities to its response.
  *
  * It takes an [[AttendJob]] from `jobs`, streams the probabilities of its slot's softmax
  * bank into the probability buffer, the importance accumulator (`accum`) and, when
  * `M < N`, the 17-bit value [[TopKEngine]]; when `M = N` the selection is every position
  * and each `p_j` issues its V row at once. The selected positions (ascending) turn into
  * V-row fetches of their token ids on the value [[RowFetcher]] (its own [[RowAssembler]]
  * and [[PlaneUnpacker]]) and the rows with their `p_j` into the [[ValueAccumulator]]; its
  * result updates the head importance and the response is written: header, pmax and
  * cycles, `D` outputs, the selected ids (four to a word, one word a cycle). The slot is
  * then free.
  *
  * Interface to the others: owns the value path (value fetcher, assembler, unpacker, value
  * top-k, accumulator, probability and selected-id buffers); shares `softmax` (drives its
  * stream and probs), `imp` (token and head accumulation) and `bank` (reads the job's
  * slot, clears `slotBusy` after the response). `drained` tells the front end that no
  * ATTEND is here or waiting in `jobs`. Its response words leave on `bWord` (with
  * `bWordValid`, `bWordLast`; taken when the controller sets `bWordFire`), packed by
  * [[ResponseWords]]; `finish` pulses when it answers.
  *
  * @param p the hardware parameters
  */
class BackEnd(p: SpAttenParams, jobs: DecoupledIO[AttendJob], cycle: UInt, softmax: Softmax,
              imp: ImportanceBuffer, bank: TokenListBank, drained: Bool, finish: Bool) {
  import AttentionController.{low, fetchRow}

  private val cntBits    = p.tokenIdxBits
  private val pBits      = p.probFracBits + 1
  private val idxBits    = log2Ceil(p.maxTokens).max(1)
  private def ix(j: UInt): UInt = low(j, idxBits)
  private val idsPerWord = ResponseWords.idsPerWord
  private val idLaneBits = log2Ceil(idsPerWord)
  private val idWords    = (p.maxTokens + idsPerWord - 1) / idsPerWord
  private val idWordBits = log2Ceil(idWords).max(1)

  // ---------------- units of the value path ----------------
  /** Fetches value rows (its DRAM port goes to the controller's arbiter). */
  val valFetch  = Module(new RowFetcher(p))
  val valUnpack = Module(new PlaneUnpacker(p))
  val valueTopk = Module(new TopKEngine(p, pBits, p.maxTokens, p.topkParallelism))
  val valueAcc  = Module(new ValueAccumulator(p))
  // ADAPTER until the back end takes several rows a cycle: one row a beat each way
  // (`valRow` in, `valAsmOut` out) on the multi-row fetcher
  val valRow = Wire(Decoupled(new FetchRow(p)))
  valFetch.io.rows.valid := valRow.valid
  valFetch.io.rows.bits.count := 1.U
  valFetch.io.rows.bits.rows := VecInit(Seq.fill(p.keysPerCycle)(valRow.bits))
  valRow.ready := valFetch.io.rows.ready
  valFetch.io.maxRows := 1.U
  val valAsmOut = Wire(Decoupled(UInt((p.maxRowBursts * p.burstBits).W)))
  valAsmOut.valid := valFetch.io.out.valid
  valAsmOut.bits := valFetch.io.out.bits.rows(0)
  valFetch.io.out.ready := valAsmOut.ready

  val bstate = RegInit(BackState.idle)
  def bin(st: BackState.Type): Bool = bstate === st
  def bgoto(st: BackState.Type): Unit = bstate := st

  val cur = Reg(new AttendJob(p))
  val pruneValues = cur.m =/= cur.n
  drained := bin(BackState.idle) && !jobs.valid

  val pBuf   = Mem(p.maxTokens, UInt(pBits.W))
  /** The selected ids, one response id word a row. */
  val selBuf = Mem(idWords, Vec(idsPerWord, UInt(p.tokenBits.W)))
  val outO   = Reg(Vec(p.maxHeadDim, SInt(64.W)))
  /** The group's V rows by list position, and which are there: a row fetched for one
    * head of a group is read here by the later heads that select it. Cleared when a
    * request's first head starts. */
  private val rowBits = p.maxRowBursts * p.burstBits
  val vRows  = Mem(p.maxTokens, UInt(rowBits.W))
  val vHave  = RegInit(0.U(p.maxTokens.W))
  val bIssue = RegInit(0.U(cntBits.W)) // value rows issued
  val bDone  = RegInit(0.U(cntBits.W)) // value rows accumulated
  val bAux   = RegInit(0.U(cntBits.W)) // probabilities taken, words sent
  val bCmdSent    = RegInit(false.B)
  val bStreamSent = RegInit(false.B)

  jobs.ready := bin(BackState.idle)
  when(jobs.fire) {
    cur := jobs.bits
    when(jobs.bits.first) { vHave := 0.U }
    bIssue := 0.U
    bDone := 0.U
    bAux := 0.U
    bCmdSent := false.B
    bStreamSent := false.B
    bgoto(BackState.probs)
  }

  softmax.io.stream.valid := false.B
  softmax.io.stream.bits.bank := cur.slot
  softmax.io.stream.bits.n := cur.n
  softmax.io.stream.bits.recip := cur.recip
  softmax.io.probs.ready := false.B
  valueTopk.io.cmd.valid := false.B
  valueTopk.io.cmd.bits := cur.m
  valueTopk.io.in.valid := false.B
  valueTopk.io.in.bits.score := softmax.io.probs.bits.p
  valueTopk.io.in.bits.last := softmax.io.probs.bits.last
  valueTopk.io.count.ready := true.B
  valueTopk.io.out.ready := false.B
  valueAcc.io.d := low(cur.d, p.dimBits)
  valueAcc.io.rows.valid := false.B
  valueAcc.io.rows.bits.v := valUnpack.io.out.bits
  valueAcc.io.rows.bits.p := 0.U
  valueAcc.io.rows.bits.last := false.B
  valueAcc.io.rows.bits.empty := false.B
  valueAcc.io.result.ready := false.B
  imp.io.tokAcc.valid := false.B
  imp.io.tokAcc.bits.id := 0.U
  imp.io.tokAcc.bits.prob := 0.U
  imp.io.headAcc.valid := false.B
  imp.io.headAcc.bits.id := low(cur.headId, log2Ceil(p.maxHeads).max(1))
  imp.io.headAcc.bits.amount := 0.U
  valAsmOut.ready := false.B
  valUnpack.io.in.valid := false.B
  valUnpack.io.in.bits.row := valAsmOut.bits
  valUnpack.io.in.bits.bits := cur.vBits
  valUnpack.io.in.bits.isSigned := true.B
  valUnpack.io.out.ready := false.B
  /** The response word the back end offers, and whether the controller took it. */
  val bWordValid = WireDefault(false.B)
  val bWord = WireDefault(0.U(p.wordBits.W))
  val bWordLast = WireDefault(false.B)
  val bWordFire = WireDefault(false.B)

  // ---------------- probabilities, value fetch and P x V ----------------
  // With M < N the probabilities go to the value top-k engine and the V rows of its
  // selection are fetched in state values. With M = N every position is selected, so each
  // p_j issues its V row at once and the value fetch overlaps the probability stream.
  /** p of the V rows in flight, in order. */
  val inflight = Module(new Queue(UInt(pBits.W), p.numChannels * p.maxInflight + 4))
  inflight.io.enq.valid := false.B
  inflight.io.enq.bits := 0.U
  inflight.io.deq.ready := false.B
  /** Where each V row in flight comes from (the row buffer or DRAM) and its position, in
    * order, taken when the row enters the unpacker. */
  class RowSrc extends Bundle {
    val buffered = Bool()
    val pos      = UInt(idxBits.W)
  }
  val srcQ = Module(new Queue(new RowSrc, p.numChannels * p.maxInflight + 4))
  srcQ.io.enq.valid := false.B
  srcQ.io.enq.bits.buffered := false.B
  srcQ.io.enq.bits.pos := 0.U
  srcQ.io.deq.ready := false.B
  /** A value row position to issue: valid, position, p. */
  val posValid = WireDefault(false.B)
  val pos      = WireDefault(0.U(cntBits.W))
  val posP     = WireDefault(0.U(pBits.W))
  val t = bank.tok(cur.slot, pos)
  val valuePhase = bin(BackState.probs) || bin(BackState.values)
  val buffered = vHave(ix(pos))
  val queuesReady = inflight.io.enq.ready && srcQ.io.enq.ready
  /** The position can be taken: its row is in the buffer, or the fetcher takes it. */
  val posReady = queuesReady && (buffered || valRow.ready)
  valRow.valid := valuePhase && posValid && queuesReady && !buffered
  valRow.bits := fetchRow(p, t, cur.vBase, AttentionController.rowBursts(p, cur.d, cur.vBits))
  when(valuePhase) {
    inflight.io.enq.valid := posValid && posReady
    inflight.io.enq.bits := posP
    srcQ.io.enq.valid := posValid && posReady
    srcQ.io.enq.bits.buffered := buffered
    srcQ.io.enq.bits.pos := ix(pos)
  }
  val posTaken = valuePhase && posValid && posReady

  when(bin(BackState.probs)) {
    softmax.io.stream.valid := !bStreamSent
    when(softmax.io.stream.fire) { bStreamSent := true.B }
    valueTopk.io.cmd.valid := pruneValues && !bCmdSent
    when(valueTopk.io.cmd.fire) { bCmdSent := true.B }
    val j = softmax.io.probs.bits.idx
    when(pruneValues) {
      softmax.io.probs.ready := bCmdSent && valueTopk.io.in.ready
      valueTopk.io.in.valid := bCmdSent && softmax.io.probs.valid
    }.otherwise {
      posValid := softmax.io.probs.valid
      pos := j
      posP := softmax.io.probs.bits.p
      softmax.io.probs.ready := posReady
    }
    when(softmax.io.probs.fire) {
      pBuf(ix(j)) := softmax.io.probs.bits.p
      imp.io.tokAcc.valid := cur.accum
      imp.io.tokAcc.bits.id := low(bank.tok(cur.slot, j), imp.idBits)
      imp.io.tokAcc.bits.prob := softmax.io.probs.bits.p
      bAux := bAux + 1.U
      when(softmax.io.probs.bits.last) {
        bAux := 0.U
        bgoto(BackState.values)
      }
    }
  }
  when(bin(BackState.values) && pruneValues) {
    // the engine's selected positions, ascending
    posValid := valueTopk.io.out.valid
    pos := valueTopk.io.out.bits.position.pad(cntBits)
    posP := pBuf(ix(pos))
    valueTopk.io.out.ready := posReady
  }
  when(posTaken) {
    // the id of the value row joins the response's id words
    val w = low(bIssue >> idLaneBits, idWordBits)
    val row = WireDefault(VecInit(Seq.fill(idsPerWord)(t)))
    selBuf.write(w, row, VecInit((0 until idsPerWord).map(i => low(bIssue, idLaneBits) === i.U)))
    bIssue := bIssue + 1.U
  }
  when(bin(BackState.values) || (bin(BackState.probs) && !pruneValues)) {
    // rows (DRAM or the row buffer, in issue order) -> unpack -> accumulator
    val src = srcQ.io.deq.bits
    valUnpack.io.in.valid := srcQ.io.deq.valid && (src.buffered || valAsmOut.valid)
    valUnpack.io.in.bits.row := Mux(src.buffered, vRows(src.pos), valAsmOut.bits)
    valAsmOut.ready := srcQ.io.deq.valid && !src.buffered && valUnpack.io.in.ready
    srcQ.io.deq.ready := valUnpack.io.in.ready && (src.buffered || valAsmOut.valid)
    when(valAsmOut.fire) {
      vRows(src.pos) := valAsmOut.bits
      vHave := vHave | (1.U(p.maxTokens.W) << src.pos)
    }
    valueAcc.io.rows.valid := valUnpack.io.out.valid && inflight.io.deq.valid
    valUnpack.io.out.ready := valueAcc.io.rows.ready && inflight.io.deq.valid
    inflight.io.deq.ready := valueAcc.io.rows.ready && valUnpack.io.out.valid
    valueAcc.io.rows.bits.p := inflight.io.deq.bits
    valueAcc.io.rows.bits.last := bDone === cur.m - 1.U
    when(valueAcc.io.rows.fire) {
      bDone := bDone + 1.U
      when(valueAcc.io.rows.bits.last) { bgoto(BackState.result) }
    }
  }

  when(bin(BackState.result)) {
    valueAcc.io.result.ready := true.B
    when(valueAcc.io.result.fire) {
      outO := valueAcc.io.result.bits.o
      val hMax = ((BigInt(1) << p.headImportanceBits) - 1).U
      val amount = valueAcc.io.result.bits.headImp
      imp.io.headAcc.valid := cur.accum
      imp.io.headAcc.bits.amount := Mux(amount > hMax, hMax, amount)(p.headImportanceBits - 1, 0)
      bgoto(Mux(cur.isGroup && cur.first, BackState.respGroup, BackState.respHeader))
    }
  }

  // ---------------- ATTEND response ----------------
  when(bin(BackState.respGroup)) {
    // a grouped response starts with its own header word, then one section a head
    bWordValid := true.B
    bWord := ResponseWords.groupHeader(cur.tag, cur.heads, cur.d)
    when(bWordFire) { bgoto(BackState.respHeader) }
  }
  when(bin(BackState.respHeader)) {
    bWordValid := true.B
    bWord := ResponseWords.attendHeader(cur.tag, cur.m, cur.n, cur.requantized)
    when(bWordFire) { bgoto(BackState.respWord1) }
  }
  when(bin(BackState.respWord1)) {
    bWordValid := true.B
    bWord := ResponseWords.attendWord1(cur.pmax, cur.headId, cycle - cur.startCycle)
    when(bWordFire) {
      bAux := 0.U
      bgoto(BackState.respO)
    }
  }
  when(bin(BackState.respO)) {
    bWordValid := true.B
    bWord := ResponseWords.o(outO(bAux(log2Ceil(p.maxHeadDim).max(1) - 1, 0)))
    when(bWordFire) {
      bAux := bAux + 1.U
      when(bAux === cur.d - 1.U) {
        bAux := 0.U
        bgoto(BackState.respIds)
      }
    }
  }
  when(bin(BackState.respIds)) {
    // one id word a cycle; lanes past M are zero
    val row = selBuf(low(bAux, idWordBits))
    bWordValid := true.B
    bWord := ResponseWords.ids((0 until idsPerWord).map(i => Mux((bAux << idLaneBits) + i.U < cur.m, row(i), 0.U)))
    val sectionEnd = bAux === (cur.m - 1.U) >> idLaneBits
    bWordLast := sectionEnd && (!cur.isGroup || cur.lastOfGroup)
    when(bWordFire) {
      bAux := bAux + 1.U
      when(sectionEnd) {
        finish := bWordLast
        bank.slotBusy(cur.slot) := false.B
        bgoto(BackState.idle)
      }
    }
  }
}
