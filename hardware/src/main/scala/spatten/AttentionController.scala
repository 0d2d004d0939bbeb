package spatten

import chisel3._
import chisel3.util._

/** Per-stage progress of the core, for testbenches that must name a stalled stage. */
class CoreStatus(p: SpAttenParams) extends Bundle {
  /** Front-end state, an index into [[CtrlState.names]]. */
  val state      = UInt(CtrlState.stateBits.W)
  /** Back-end state, an index into [[BackState.names]]. */
  val backState  = UInt(BackState.stateBits.W)
  /** Responder state (the back end's response writer), an index into [[RespState.names]]. */
  val respState  = UInt(RespState.stateBits.W)
  /** 1 or 2: the key pass running (ATTEND). */
  val pass       = UInt(2.W)
  /** The key fetcher (token lists and keys) and the value fetcher. */
  val fetch      = new FetcherStatus(p)
  val valueFetch = new FetcherStatus(p)
  /** Key rows issued to the fetcher and scores into the softmax of the front end's
    * request; probabilities taken and value rows issued and accumulated in the back end's. */
  val keysIssued  = UInt(16.W)
  val scoresDone  = UInt(16.W)
  val probsDone   = UInt(16.W)
  val valuesIssued = UInt(16.W)
  val valuesDone  = UInt(16.W)
  /** Commands finished since reset (wraps). */
  val requestsDone = UInt(32.W)
  val softmaxBusy = Bool()
  val valueTopkPhase = UInt(3.W)
  val rankTopkPhase  = UInt(3.W)
  /** The front end is in `keys`, pass 1, with the next beat's K MSB rows not yet in the
    * row buffer (waiting for the fill, i.e. for DRAM). */
  val keyRowsWait = Bool()
}

/** Runs the commands through the datapath (SPEC.md sections 2, 3 and 5) as a two-stage
  * pipeline, so that one ATTEND's keys are fetched while the previous one's values are.
  *
  * The controller is one module in three parts, each in its own file:
  *  - [[FrontEnd]] (state [[CtrlState]]): takes the requests; for an ATTEND fetches the
  *    token list and the keys, computes the scores and the softmax summary, decides
  *    requantization and hands an [[AttendJob]] to the back end; runs TOPK_TOKENS,
  *    TOPK_HEADS, READ_IMPORTANCE, CLEAR and error responses alone, once the back end has
  *    drained (so every command acts on importance as if the commands ran in order);
  *  - [[BackEnd]] (state [[BackState]]): the ATTEND's probabilities, value selection and
  *    fetch, P x V and its response;
  *  - [[TokenListBank]]: the slots' token lists ([[AttentionController.slots]]; an ATTEND, or one head of an ATTEND_GROUP, holds one from its list
  *    fetch to its response; the softmax bank of the same number goes with it).
  * This file holds what they share: the [[Softmax]] (front: scores and summary; back:
  * probabilities), the [[ImportanceBuffer]] (front: reads and CLEAR; back: accumulation),
  * the job queue between them (two entries), the [[DramArbiter]] of the three fetchers (token lists and K LSBs, the K MSB fill, values), the
  * response word stream (the back end's words win; the two never offer one in the same
  * cycle) and the status. Every response word is packed by [[ResponseWords]].
  *
  * Token ids index the importance buffer; when it is built for fewer than 16 id bits, a
  * command that would use importance (ATTEND with `accumImportance`, TOPK_TOKENS,
  * READ_IMPORTANCE) and finds an id out of its range in its list answers with an error
  * response (opcode 0xFF) before changing any state (with the default 16 bits, never).
  *
  * Every inner stream is ready/valid.
  *
  * @param p the hardware parameters
  */
class AttentionController(p: SpAttenParams) extends Module {
  val io = IO(new Bundle {
    val req    = Flipped(Decoupled(new Request(p)))
    val words  = Decoupled(new WordStream(p))
    val ids    = Decoupled(new PackedId)
    val selIds = Output(Bool())
    val dram   = Vec(p.numChannels, new DramReadPort(p))
    val cycle  = Input(UInt(32.W))
    val status = Output(new CoreStatus(p))
  })

  // ---------------- shared units ----------------
  val arbiter = Module(new DramArbiter(p, 3, background = 1))
  val softmax = Module(new Softmax(p, AttentionController.slots))
  val imp     = Module(new ImportanceBuffer(p))
  io.dram <> arbiter.io.dram

  val bank = new TokenListBank(p, AttentionController.slots)
  val jobs = Module(new Queue(new AttendJob(p), AttentionController.slots))

  val requestsDone = RegInit(0.U(32.W))
  val frontFinish = WireDefault(false.B)
  val backFinish  = WireDefault(false.B)
  when(frontFinish || backFinish) { requestsDone := requestsDone + 1.U }
  assert(!(frontFinish && backFinish), "front and back end answered in the same cycle")
  /** No ATTEND is in the back end or waiting for it. */
  val backDrained = Wire(Bool())

  val front = new FrontEnd(p, io.req, io.ids, io.selIds, softmax, imp, bank, jobs.io.enq, backDrained, frontFinish)
  val back  = new BackEnd(p, jobs.io.deq, io.cycle, softmax, imp, bank, backDrained, backFinish)
  arbiter.io.clients(0) <> front.keyFetch.io.dram
  arbiter.io.clients(1) <> back.valFetch.io.dram
  arbiter.io.clients(2) <> front.fillFetch.io.dram

  // ---------------- the word stream: back end (ATTEND) or front end (the others) ----------------
  val backWords = back.bWordValid
  io.words.valid := Mux(backWords, back.bWordValid, front.fWordValid)
  io.words.bits.data := Mux(backWords, back.bWord, front.fWord)
  io.words.bits.last := Mux(backWords, back.bWordLast, front.fWordLast)
  back.bWordFire := backWords && io.words.fire
  front.fWordFire := !backWords && io.words.fire
  assert(!(back.bWordValid && front.fWordValid), "front and back end both answering")

  // ---------------- status ----------------
  io.status.state := front.state.asUInt
  io.status.backState := back.bstate.asUInt
  io.status.respState := back.rstate.asUInt
  io.status.pass := front.pass
  io.status.fetch := front.keyFetch.io.status
  io.status.valueFetch := back.valFetch.io.status
  io.status.keysIssued := Mux(front.in(CtrlState.keys), front.issueCnt, 0.U)
  io.status.scoresDone := Mux(front.in(CtrlState.keys), front.aux, 0.U)
  io.status.probsDone := Mux(back.bin(BackState.probs), back.bAux, 0.U)
  io.status.valuesIssued := Mux(back.valuePhase, back.bIssue, 0.U)
  io.status.valuesDone := Mux(back.valuePhase, back.bDone, 0.U)
  io.status.requestsDone := requestsDone
  io.status.softmaxBusy := softmax.io.busy || softmax.io.streaming
  io.status.valueTopkPhase := back.valueTopk.io.status.phase
  io.status.rankTopkPhase := front.rankTopk.io.status.phase
  io.status.keyRowsWait := front.keyRowsWait
}

/** Helpers of the controller's parts. */
object AttentionController {
  /** Token-list slots (and softmax banks): ATTENDs (heads of a group) in flight between
    * the front end's list fetch and the back end's response. Four let the front end run
    * up to three heads ahead of the back end (a group's later heads read their keys from
    * the row buffer while earlier heads' values are fetched). */
  val slots: Int = 4

  /** The low `w` bits of `x` (zero-extended when narrower). */
  def low(x: UInt, w: Int): UInt = x.pad(w)(w - 1, 0)

  /** Bursts of a plane row: ceil(D * b / (8 * burstBytes)). */
  def rowBursts(p: SpAttenParams, d: UInt, b: UInt): UInt =
    low(((d * b) +& ((8 * p.burstBytes) - 1).U) >> log2Ceil(8 * p.burstBytes), RowFetcher.rowBurstBits(p))

  /** A row request for a [[RowFetcher]]. */
  def fetchRow(p: SpAttenParams, index: UInt, base: UInt, bursts: UInt): FetchRow = {
    val r = Wire(new FetchRow(p))
    r.index := index
    r.base := base
    r.rowBursts := bursts
    r
  }
}
