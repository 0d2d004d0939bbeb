package spatten

import chisel3._
import chisel3.util._

/** Back-end states, exposed on the status bundle as their numbers (written by the
  * elaborator beside the front end's, see [[CtrlState]]). `result`: the P x V result is
  * ready and waits for the responder to be free. */
object BackState extends ChiselEnum {
  val idle, probs, values, result = Value
  /** The state names, by number. */
  def names: Seq[String] = allNames
  val stateBits: Int = getWidth
}

/** States of the back end's responder, which writes an ATTEND's response while the value
  * path runs the next ATTEND (exposed on the status bundle like [[BackState]]). */
object RespState extends ChiselEnum {
  val idle, respGroup, respHeader, respWord1, respO, respSel = Value
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
  /** V rows selected: `min(valueTopK, n)` (`n` when 0); `n` until the last probability
    * with `vThresh`, the count selected after. */
  val m           = UInt(p.tokenIdxBits.W)
  /** Local value pruning by threshold: the positions with `p_j >= min(vThr, pmax)`. */
  val vThresh     = Bool()
  val vThr        = w("valueTopK")
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
  * probabilities to its response, `C = keysPerCycle` positions a cycle (SPEC.md section 2,
  * "Throughput of steps 4-7").
  *
  * It takes an [[AttendJob]] from `jobs`, streams the probabilities of its slot's softmax
  * bank (beats of `C` consecutive positions) into the probability buffer, the importance
  * accumulator (`accum`; `C` banked adds a beat) and, when `M < N`, the 17-bit value
  * [[TopKEngine]] (a beat of `C` scores a cycle); when `M = N` the selection is every
  * position and each beat issues its `C` V rows at once. A beat of selected positions
  * (`IssueBeat`: the selected positions of one `C`-aligned block, a mask; from the engine,
  * one block with a selected position a cycle) records its ids for the response, fetches the V rows that the group's row
  * buffer `vRows` does not hold (`vFetch`, up to `C` rows a [[FetchRows]] beat) and waits
  * in `accQ`; rows arrive as [[RowBeat]]s (`vRowsIn`) in fetch order, are unpacked and
  * written to `vRows` (one bank a lane); a beat whose rows are all there enters the
  * [[ValueAccumulator]] (`C` row lanes). Its result updates the head importance and goes,
  * with the job, to the responder (when it is free); the slot is then free and the value
  * path takes the next job. The responder writes the response (header, pmax and cycles,
  * `D` outputs, the selection map, 64 list positions a word, one word a cycle) while the next job's
  * probabilities and values run: the selection map has two halves, one written by the
  * value path, the other read by the responder (they swap at each hand-over).
  *
  * `vFetch` and `vRowsIn` are the value [[RowFetcher]]'s own ports (it issues up to `C`
  * rows a beat over the channels and delivers up to `C` whole rows a beat, in order);
  * rows from `vRows` (the later heads of a group) also come `C` a cycle.
  *
  * Interface to the others: owns the value path (value fetcher, assembler, value top-k,
  * accumulator, probability, selection map and V row buffers); shares `softmax` (drives its
  * stream and probs), `imp` (token and head accumulation) and `bank` (reads the job's
  * slot, one list row a cycle, and clears `slotBusy` after the response). `drained` tells
  * the front end that no ATTEND is here or waiting in `jobs`. Its response words leave on
  * `bWord` (with `bWordValid`, `bWordLast`; taken when the controller sets `bWordFire`),
  * packed by [[ResponseWords]]; `finish` pulses when it answers.
  *
  * @param p the hardware parameters
  */
class BackEnd(p: SpAttenParams, jobs: DecoupledIO[AttendJob], cycle: UInt, softmax: Softmax,
              imp: ImportanceBuffer, bank: TokenListBank, drained: Bool, finish: Bool) {
  import AttentionController.{low, fetchRow}

  private val cntBits    = p.tokenIdxBits
  private val pBits      = p.probFracBits + 1
  private val idxBits    = log2Ceil(p.maxTokens).max(1)
  /** List positions a selection word of the response covers (64). */
  private val selPer     = ResponseWords.selPerWord
  private val selBits    = log2Ceil(selPer)
  private val selWords   = (p.maxTokens + selPer - 1) / selPer
  private val selWBits   = log2Ceil(selWords).max(1)
  /** Words of one half of the map (addresses `half << selWBits | w`). */
  private val selHalf    = 1 << selWBits

  // ---------------- several positions a cycle ----------------
  /** Positions a beat: probabilities, importance adds, value rows (`keysPerCycle`). */
  private val C = p.keysPerCycle
  require(Softmax.streamLanes(p) == C, s"the softmax stream gives ${Softmax.streamLanes(p)} a beat, keysPerCycle is $C")
  require(bank.idsPerRow % C == 0, s"a token-list row (${bank.idsPerRow} ids) must hold whole beats of $C")
  private val cBits     = log2Ceil(C)
  private val cntCBits  = log2Ceil(C + 1)
  private val blocks    = (p.maxTokens + C - 1) / C
  private val blockBits = log2Ceil(blocks).max(1)
  /** The C-aligned block of position `j` (a row of the position-indexed buffers) and its lane. */
  private def blockOf(j: UInt): UInt = low(j >> cBits, blockBits)
  private def laneOf(j: UInt): UInt = if (C == 1) 0.U else j(cBits - 1, 0)

  // ---------------- units of the value path ----------------
  /** Fetches value rows (its DRAM port goes to the controller's arbiter). */
  val valFetch  = Module(new RowFetcher(p))
  require(C <= p.topkParallelism, s"keysPerCycle ($C) must not exceed topkParallelism (${p.topkParallelism})")
  /** The value top-k takes a beat of C probabilities a cycle and gives the selected
    * positions of a C-aligned block a cycle. */
  val valueTopk = Module(new TopKEngine(p, pBits, p.maxTokens, p.topkParallelism, "ValueTopK", C, C))
  val valueAcc  = Module(new ValueAccumulator(p))

  /** The value path's fetch interface: up to C rows to fetch a beat (in request order) and
    * up to C rows delivered a beat (in the same order, any grouping). */
  val vFetch = Wire(Decoupled(new FetchRows(p)))
  val vRowsIn = Wire(Decoupled(new RowBeat(p)))

  valFetch.io.rows <> vFetch
  vRowsIn <> valFetch.io.out
  valFetch.io.maxRows := C.U

  val bstate = RegInit(BackState.idle)
  def bin(st: BackState.Type): Bool = bstate === st
  def bgoto(st: BackState.Type): Unit = bstate := st

  val cur = Reg(new AttendJob(p))
  /** Value top-k by count (the engine); else every position, or (`vThresh`) the positions
    * at or above `min(vThr, pmax)`, each beat issuing its rows at once. */
  val pruneValues = cur.m =/= cur.n && !cur.vThresh
  val vThrEff = Mux(cur.vThr < cur.pmax, cur.vThr, cur.pmax)

  /** Probabilities by position, C to a row. */
  val pBuf   = Mem(blocks, Vec(C, UInt(pBits.W)))
  /** The selection as a bit map of list positions, 64 to a word (the response's selection
    * words); two halves (`wHalf`: the value path's, the other the responder's). A word is
    * read as zero until its first write in the job (`selSet`, cleared at each hand-over for
    * the half the value path takes next). */
  val selMap = Mem(2 * selHalf, UInt(selPer.W))
  val selSet = RegInit(0.U((2 * selHalf).W))
  val wHalf  = RegInit(false.B)
  private def selAddr(half: Bool, w: UInt): UInt = Cat(half, low(w, selWBits))
  private def selWord(half: Bool, w: UInt): UInt = {
    val a = selAddr(half, w)
    Mux(selSet(a), selMap(a), 0.U)
  }
  /** The responder's job, outputs and state. */
  val rj     = Reg(new AttendJob(p))
  val outO   = Reg(Vec(p.maxHeadDim, SInt(64.W)))
  val rstate = RegInit(RespState.idle)
  def rin(st: RespState.Type): Bool = rstate === st
  val rAux   = RegInit(0.U(cntBits.W)) // words sent
  drained := bin(BackState.idle) && !jobs.valid && rin(RespState.idle)
  /** The group's V rows, unpacked, by list position (C to a row, one bank a lane), and
    * which are there: a row fetched for one head of a group is read here by the later heads
    * that select it. Cleared when a request's first head starts. */
  val vRows  = Mem(blocks, Vec(C, Vec(p.maxHeadDim, SInt(p.dataBits.W))))
  val vHave  = RegInit(VecInit(Seq.fill(blocks)(0.U(C.W))))
  val bIssue = RegInit(0.U(cntBits.W)) // value rows issued
  val bDone  = RegInit(0.U(cntBits.W)) // value rows accumulated
  val bAux   = RegInit(0.U(cntBits.W)) // probabilities taken, words sent
  val bCmdSent    = RegInit(false.B)
  val bLastIn     = RegInit(false.B) // the beat with last went into the P x V array
  val bStreamSent = RegInit(false.B)

  jobs.ready := bin(BackState.idle)
  when(jobs.fire) {
    cur := jobs.bits
    when(jobs.bits.first) { vHave.foreach(_ := 0.U) }
    bIssue := 0.U
    bDone := 0.U
    bAux := 0.U
    bCmdSent := false.B
    bLastIn := false.B
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
  if (C == 1) {
    valueTopk.io.in.bits.score.get := softmax.io.probs.bits.p(0)
  } else {
    valueTopk.io.in.bits.scores.get := softmax.io.probs.bits.p
    valueTopk.io.in.bits.count.get := softmax.io.probs.bits.count
  }
  valueTopk.io.in.bits.last := false.B
  valueTopk.io.count.ready := true.B
  valueTopk.io.out.ready := false.B
  valueAcc.io.d := low(cur.d, p.dimBits)
  valueAcc.io.result.ready := false.B
  imp.io.tokAcc.valid := false.B
  imp.io.headAcc.valid := false.B
  imp.io.headAcc.bits.id := low(cur.headId, log2Ceil(p.maxHeads).max(1))
  imp.io.headAcc.bits.amount := 0.U
  /** The response word the back end offers, and whether the controller took it. */
  val bWordValid = WireDefault(false.B)
  val bWord = WireDefault(0.U(p.wordBits.W))
  val bWordLast = WireDefault(false.B)
  val bWordFire = WireDefault(false.B)

  // ---------------- probabilities, value fetch and P x V ----------------
  // With M < N the probabilities go to the value top-k engine (a beat of C a cycle) and
  // the V rows of its selection are issued in state values, the selected positions of one
  // C-aligned block a cycle (the engine's output rate). With M = N every position is
  // selected, so each beat of C probabilities issues its C V rows at once and the value
  // fetch overlaps the probability stream. A beat of positions (`IssueBeat`) is the
  // positions `pos0 + i` with `mask(i)` set, `pos0` a multiple of C (one C-aligned block);
  // `p(i)` is zero where `mask(i)` is clear.
  class IssueBeat extends Bundle {
    val pos0 = UInt(idxBits.W)
    val mask = UInt(C.W)
    val p    = Vec(C, UInt(pBits.W))
    /** The last probability beat (`vThresh`: every beat is issued, empty or not). */
    val last = Bool()
  }
  /** Positions of the V rows fetched from DRAM, in fetch order, a beat's worth (compacted). */
  class ArrivalBeat extends Bundle {
    val pos   = Vec(C, UInt(idxBits.W))
    val count = UInt(cntCBits.W)
  }
  private val depth = p.numChannels * p.maxInflight + 4
  /** Issued beats waiting for their rows, in order. */
  val accQ = Module(new Queue(new IssueBeat, depth))
  /** Positions of the rows in flight from DRAM, in order. */
  val arrQ = Module(new Queue(new ArrivalBeat, depth))
  val iss = Wire(Decoupled(new IssueBeat))
  iss.valid := false.B
  iss.bits := DontCare
  iss.bits.mask := 0.U
  iss.bits.last := false.B
  val valuePhase = bin(BackState.probs) || bin(BackState.values)

  // the token ids of the positions at hand: one list row holds a whole beat
  val idsPos0 = Mux(bin(BackState.probs), softmax.io.probs.bits.idx, iss.bits.pos0)
  private val listLaneBits = log2Ceil(bank.idsPerRow)
  val listRow = bank.row(cur.slot, idsPos0 >> listLaneBits)
  def idAt(pos0: UInt, i: Int): UInt = {
    val lane = if (listLaneBits == 0) 0.U else (pos0(listLaneBits - 1, 0) +& i.U)(listLaneBits - 1, 0)
    listRow(lane)
  }

  // ---- issue: a beat of positions -> the selection map, V fetches of the rows not buffered ----
  val issBlock = blockOf(iss.bits.pos0)
  val issLane0 = laneOf(iss.bits.pos0)
  val issLive  = iss.bits.mask.asBools
  val issHave  = vHave(issBlock)
  val issNeed  = VecInit(Seq.tabulate(C)(i => issLive(i) && !issHave((issLane0 +& i.U)(cBits.max(1) - 1, 0))))
  val needCount = PopCount(issNeed)
  /** Rank of lane i among the lanes to fetch. */
  val needRank = VecInit(Seq.tabulate(C)(i => PopCount(issNeed.asUInt & ((1 << i) - 1).U(C.W))))
  val rowBursts = AttentionController.rowBursts(p, cur.d, cur.vBits)
  vFetch.bits.count := needCount
  arrQ.io.enq.bits.count := needCount
  for (k <- 0 until C) {
    val sel = VecInit(Seq.tabulate(C)(i => issNeed(i) && needRank(i) === k.U))
    val lane = OHToUInt(sel.asUInt)
    vFetch.bits.rows(k) := fetchRow(p, Mux1H(sel, Seq.tabulate(C)(i => idAt(iss.bits.pos0, i))), cur.vBase, rowBursts)
    arrQ.io.enq.bits.pos(k) := iss.bits.pos0 + lane
  }
  val fetchOk = needCount === 0.U || (vFetch.ready && arrQ.io.enq.ready)
  iss.ready := valuePhase && accQ.io.enq.ready && fetchOk
  vFetch.valid := valuePhase && iss.valid && accQ.io.enq.ready && arrQ.io.enq.ready && needCount =/= 0.U
  arrQ.io.enq.valid := valuePhase && iss.valid && accQ.io.enq.ready && vFetch.ready && needCount =/= 0.U
  accQ.io.enq.valid := valuePhase && iss.valid && fetchOk
  accQ.io.enq.bits := iss.bits
  val issCount = PopCount(iss.bits.mask)
  when(iss.fire) {
    // the beat's positions join the response's selection map (a C-aligned block lies in
    // one 64-position word)
    val w = iss.bits.pos0 >> selBits
    val a = selAddr(wHalf, w)
    val off = if (selBits == 0) 0.U else iss.bits.pos0(selBits - 1, 0)
    selMap.write(a, selWord(wHalf, w) | (iss.bits.mask.pad(selPer) << off)(selPer - 1, 0))
    selSet := selSet | UIntToOH(a, 2 * selHalf)
    bIssue := bIssue + issCount
  }

  // ---- arrival: rows from DRAM, unpacked, into vRows at their positions ----
  val arrPtr = RegInit(0.U(cntCBits.W)) // rows of arrQ's head beat already written
  val rbPtr  = RegInit(0.U(cntCBits.W)) // rows of vRowsIn's head beat already taken
  val ah = arrQ.io.deq.bits
  val rb = vRowsIn.bits
  val nAh = ah.count - arrPtr
  val nRb = rb.count - rbPtr
  val nArr = Mux(nAh < nRb, nAh, nRb)
  val arrGo = arrQ.io.deq.valid && vRowsIn.valid
  vRowsIn.ready := arrGo && rbPtr + nArr === rb.count
  arrQ.io.deq.ready := arrGo && arrPtr + nArr === ah.count
  when(arrGo) {
    // this cycle's rows all lie in the block of the head beat (one block a beat)
    val arrBlock = blockOf(ah.pos(0))
    val pos = VecInit(Seq.tabulate(C)(i => ah.pos(low(arrPtr +& i.U, cBits.max(1)))))
    val raw = VecInit(Seq.tabulate(C)(i => rb.rows(low(rbPtr +& i.U, cBits.max(1)))))
    val unpacked = raw.map(r => PlaneUnpacker.unpack(p, r, cur.vBits, true.B))
    val at = Seq.tabulate(C)(l => VecInit(Seq.tabulate(C)(i => i.U < nArr && laneOf(pos(i)) === l.U)))
    val data = VecInit(Seq.tabulate(C)(l => Mux1H(at(l), unpacked)))
    val mask = VecInit(at.map(_.asUInt.orR))
    vRows.write(arrBlock, data, mask)
    vHave(arrBlock) := vHave(arrBlock) | mask.asUInt
    arrPtr := Mux(arrQ.io.deq.ready, 0.U, arrPtr + nArr)
    rbPtr := Mux(vRowsIn.ready, 0.U, rbPtr + nArr)
  }

  // ---- accumulate: a beat whose rows are all in vRows -> the P x V array ----
  val ab = accQ.io.deq.bits
  val abBlock = blockOf(ab.pos0)
  val abLane0 = laneOf(ab.pos0)
  private def rot(i: Int): UInt = (abLane0 +& i.U)(cBits.max(1) - 1, 0)
  val abHave = vHave(abBlock)
  val abCount = PopCount(ab.mask)
  val abReady = (0 until C).map(i => !ab.mask(i) || abHave(rot(i))).reduce(_ && _)
  val abRows = vRows(abBlock)
  val abLast = Mux(cur.vThresh, ab.last, bDone + abCount === cur.m)
  // lanes outside the mask carry p = 0 (IssueBeat), so they add nothing
  valueAcc.io.beats.valid := valuePhase && accQ.io.deq.valid && abReady
  valueAcc.io.beats.bits.p := ab.p
  valueAcc.io.beats.bits.v := VecInit(Seq.tabulate(C)(i => if (C == 1) abRows(0) else abRows(rot(i))))
  valueAcc.io.beats.bits.count := C.U
  valueAcc.io.beats.bits.last := abLast
  valueAcc.io.beats.bits.empty := false.B
  accQ.io.deq.ready := valuePhase && valueAcc.io.beats.ready && abReady
  when(valueAcc.io.beats.fire) {
    bDone := bDone + abCount
    when(abLast) { bLastIn := true.B }
  }
  // the result once every row is in and the probabilities are all taken (with M = N the
  // last rows can be in before the last probability beat, whose importance adds stall;
  // with vThresh the last beat may select nothing)
  when(bin(BackState.values) && Mux(cur.vThresh, bLastIn, bDone === cur.m)) { bgoto(BackState.result) }

  // ---- probabilities: a beat of C -> pBuf, token importance, and the issue (M = N) or
  // the value top-k (M < N, one score a cycle); the beat is taken when every side has it ----
  val pb = softmax.io.probs.bits
  val impDone  = RegInit(false.B) // the importance adds of the beat at hand are done
  val sinkDone = RegInit(false.B) // the issue / the top-k has the beat at hand
  imp.io.tokAcc.bits.count := pb.count
  imp.io.tokAcc.bits.prob := pb.p
  imp.io.tokAcc.bits.id := VecInit(Seq.tabulate(C)(i => low(idAt(pb.idx, i), imp.idBits)))
  val sinkNow = WireDefault(false.B)
  when(bin(BackState.probs)) {
    softmax.io.stream.valid := !bStreamSent
    when(softmax.io.stream.fire) { bStreamSent := true.B }
    valueTopk.io.cmd.valid := pruneValues && !bCmdSent
    when(valueTopk.io.cmd.fire) { bCmdSent := true.B }
    imp.io.tokAcc.valid := softmax.io.probs.valid && cur.accum && !impDone
    val impOk = !cur.accum || impDone || imp.io.tokAcc.ready
    when(pruneValues) {
      valueTopk.io.in.valid := bCmdSent && softmax.io.probs.valid && !sinkDone
      valueTopk.io.in.bits.last := pb.last
      sinkNow := valueTopk.io.in.fire
    }.otherwise {
      val live = (0 until C).map(i => i.U < pb.count && (!cur.vThresh || pb.p(i) >= vThrEff))
      iss.valid := softmax.io.probs.valid && !sinkDone
      iss.bits.pos0 := pb.idx
      iss.bits.last := pb.last
      iss.bits.mask := VecInit(live).asUInt
      iss.bits.p := VecInit(Seq.tabulate(C)(i => Mux(live(i), pb.p(i), 0.U)))
      sinkNow := iss.fire
    }
    softmax.io.probs.ready := impOk && (sinkDone || sinkNow)
    when(softmax.io.probs.valid) {
      impDone := impDone || imp.io.tokAcc.fire
      sinkDone := sinkDone || sinkNow
    }
    when(softmax.io.probs.fire) {
      impDone := false.B
      sinkDone := false.B
      pBuf.write(blockOf(pb.idx), pb.p, VecInit(Seq.tabulate(C)(i => i.U < pb.count)))
      bAux := bAux + pb.count
      when(pb.last) {
        bAux := 0.U
        bgoto(BackState.values)
      }
    }
  }
  when(bin(BackState.values) && pruneValues) {
    // the engine's selected positions, ascending, those of one C-aligned block a beat
    val pos = valueTopk.io.out.bits.position.pad(idxBits)(idxBits - 1, 0)
    val mask = if (C == 1) 1.U(1.W) else valueTopk.io.out.bits.mask.get
    val pRow = pBuf(blockOf(pos))
    iss.valid := valueTopk.io.out.valid
    iss.bits.pos0 := pos
    iss.bits.last := false.B
    iss.bits.mask := mask
    iss.bits.p := VecInit(Seq.tabulate(C)(i => Mux(mask(i), pRow(i), 0.U)))
    valueTopk.io.out.ready := iss.ready
  }

  when(bin(BackState.result)) {
    // hand the result and the job to the responder once it has sent the previous response
    valueAcc.io.result.ready := rin(RespState.idle)
    when(valueAcc.io.result.fire) {
      outO := valueAcc.io.result.bits.o
      rj := cur
      when(cur.vThresh) { rj.m := bIssue }
      rAux := 0.U
      wHalf := !wHalf
      // the half the value path takes next starts empty (the responder has sent it)
      val nextHalf = (((BigInt(1) << selHalf) - 1) << selHalf).U((2 * selHalf).W)
      selSet := selSet & Mux(wHalf, nextHalf, ~nextHalf)
      val hMax = ((BigInt(1) << p.headImportanceBits) - 1).U
      val amount = valueAcc.io.result.bits.headImp
      imp.io.headAcc.valid := cur.accum
      imp.io.headAcc.bits.amount := Mux(amount > hMax, hMax, amount)(p.headImportanceBits - 1, 0)
      rstate := Mux(cur.isGroup && cur.first, RespState.respGroup, RespState.respHeader)
      // the response needs neither the list nor the softmax bank: the slot is free
      bank.slotBusy(cur.slot) := false.B
      bgoto(BackState.idle)
    }
  }

  // ---------------- ATTEND response (the responder) ----------------
  when(rin(RespState.respGroup)) {
    // a grouped response starts with its own header word, then one section a head
    bWordValid := true.B
    bWord := ResponseWords.groupHeader(rj.tag, rj.heads, rj.d)
    when(bWordFire) { rstate := RespState.respHeader }
  }
  when(rin(RespState.respHeader)) {
    bWordValid := true.B
    bWord := ResponseWords.attendHeader(rj.tag, rj.m, rj.n, rj.requantized)
    when(bWordFire) { rstate := RespState.respWord1 }
  }
  when(rin(RespState.respWord1)) {
    bWordValid := true.B
    bWord := ResponseWords.attendWord1(rj.pmax, rj.headId, cycle - rj.startCycle)
    when(bWordFire) {
      rAux := 0.U
      rstate := RespState.respO
    }
  }
  when(rin(RespState.respO)) {
    bWordValid := true.B
    bWord := ResponseWords.o(outO(rAux(log2Ceil(p.maxHeadDim).max(1) - 1, 0)))
    when(bWordFire) {
      rAux := rAux + 1.U
      when(rAux === rj.d - 1.U) {
        rAux := 0.U
        rstate := RespState.respSel
      }
    }
  }
  when(rin(RespState.respSel)) {
    // one selection word a cycle (64 list positions), from the responder's half
    bWordValid := true.B
    bWord := ResponseWords.sel(selWord(!wHalf, rAux))
    val sectionEnd = rAux === (rj.n - 1.U) >> selBits
    bWordLast := sectionEnd && (!rj.isGroup || rj.lastOfGroup)
    when(bWordFire) {
      rAux := rAux + 1.U
      when(sectionEnd) {
        finish := bWordLast
        rstate := RespState.idle
      }
    }
  }
}
