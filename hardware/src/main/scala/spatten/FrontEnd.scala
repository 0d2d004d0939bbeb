package spatten

import chisel3._
import chisel3.util._

/** Front-end states, exposed on the status bundle as their numbers (the numbering is part
  * of the testbench's hang diagnosis and of `run.py`'s per-stage report: the elaborator
  * writes [[names]], by number, to `contract.json`). A state's
  * number is its place in this list.
  */
object CtrlState extends ChiselEnum {
  val idle, waitSlot, loadQuery, list, keys, summary, handoff, drain,
    tkScores, tkCount, tkIds, readImp, clear, respHeader, respError = Value
  /** The state names, by number. */
  def names: Seq[String] = allNames
  val stateBits: Int = getWidth
}

/** The front end of the [[AttentionController]]: takes each [[Request]], and for an ATTEND
  * runs everything up to the softmax summary; it runs the other commands alone.
  *
  * ATTEND: wait for a free slot of the [[TokenListBank]] (the softmax score bank of the
  * same number goes with it); load the query into the [[DotProductArray]]; fetch the
  * token list into the slot (`burstBytes / 2` ids a row, one burst a row); pass 1 streams
  * the MSB rows of the `N` keys, up to `keysPerCycle` a beat, from the MSB row buffer
  * (filled by `fillFetch`, a [[RowFetcher]] delivering whole rows as [[RowBeat]]s, the
  * next request's rows during this one's last head) through the row unpackers
  * (`k = msb << kLsbBits`) into the dot-product array, which takes as many keys a beat as
  * its lanes allow (SPEC.md section 2, "Throughput"), keeping every pass-1 score in a
  * score buffer (banked by position) and the score beats into the [[Softmax]] (the slot's
  * bank).
  * At the summary the requantization decision is taken (`requant`, `kLsbBits > 0`,
  * `pmax < threshold`); if taken pass 2 streams only the LSB rows (unsigned) through the
  * same array: since `(msb << L) | lsb = (msb << L) + lsb`, the full-precision score is the
  * pass-1 score plus `q . lsb`, so the MSB plane is never fetched twice. The request, its
  * slot and its summary go to the back end as an [[AttendJob]] (`jobs`), and the front end
  * takes the next request. The next ATTEND's token list is fetched ahead, during the key
  * pass and summary of this request's last head, and then its K MSB rows (SPEC.md
  * section 2, "Throughput of the key side").
  *
  * Other commands (in order with the ATTENDs: each waits in `drain` until `backDrained`,
  * i.e. the back end has answered every earlier ATTEND): TOPK_TOKENS / TOPK_HEADS rank
  * token (after a token-list fetch) or head importance in the 48-bit rank [[TopKEngine]];
  * READ_IMPORTANCE fetches the list and returns `imp[tok_j]`; CLEAR sweeps the token
  * importance and/or zeroes the head importance. Error responses also wait for the back
  * end. A command that uses importance and finds an id its [[ImportanceBuffer]] cannot
  * hold answers with an error before changing any state.
  *
  * Interface to the others: owns the key path (key fetcher, assembler, unpacker, dot
  * array, score buffer) and the rank engine; shares `softmax` (config, bank, scores,
  * summary; the back end drives its stream and probs), `imp` (reads and clear; the back
  * end accumulates), `bank` (fills slots, sets `slotBusy`). Its response words leave on
  * `fWord` (with `fWordValid`, `fWordLast`; taken when the controller sets `fWordFire`),
  * packed by [[ResponseWords]]; ranked ids leave on `ids` (packed into words by the
  * [[ResponseWriter]]). `finish` pulses when it answers.
  *
  * @param p the hardware parameters
  */
class FrontEnd(p: SpAttenParams, reqIn: DecoupledIO[Request], ids: DecoupledIO[PackedId], selIds: Bool,
               softmax: Softmax, imp: ImportanceBuffer, bank: TokenListBank,
               jobs: DecoupledIO[AttendJob], backDrained: Bool, finish: Bool) {
  import AttentionController.{low, fetchRow}

  private val cntBits   = p.tokenIdxBits
  private val scoreBits = DotProductArray.scoreBits(p)
  private val idxBits   = log2Ceil(p.maxTokens).max(1)
  private def ix(j: UInt): UInt = low(j, idxBits)

  // ---------------- units of the key path ----------------
  /** Fetches token lists and K LSB rows (its DRAM port goes to the controller's arbiter). */
  val keyFetch  = Module(new RowFetcher(p))
  /** Fills the K MSB row buffer, one request (group) after another (the controller's
    * arbiter's third client). */
  val fillFetch = Module(new RowFetcher(p))
  val keyUnpack = Module(new PlaneUnpackerBeat(p))
  val dot       = Module(new DotProductArray(p))
  val rankTopk  = Module(new TopKEngine(p, p.headImportanceBits, p.maxTokens.max(p.maxHeads), p.topkParallelism))
  private val K = p.keysPerCycle
  private val kBits = log2Ceil(K)
  private val cBits = log2Ceil(K + 1)
  /** Keys a beat of the current pass (the dot array's for the loaded `d`; a power of two). */
  val perBeat = dot.io.keysPerBeat

  val state = RegInit(CtrlState.idle)
  def in(st: CtrlState.Type): Bool = state === st
  def goto(st: CtrlState.Type): Unit = state := st

  val req  = Reg(new Request(p))
  val slot = RegInit(0.U(bank.slotBits.W)) // the slot the front end fills next (in turn)
  /** The head of the request being run (ATTEND_GROUP: 0..heads-1; ATTEND: 0). */
  val g    = RegInit(0.U(8.W))
  private val hIdxBits = log2Ceil(p.maxGroupHeads).max(1)
  val cur  = req.hd(low(g, hIdxBits))
  val lastHead = g === req.heads - 1.U
  /** The group's K LSB rows are in the row buffer (a head before this one requantized). */
  val lsbCached = RegInit(false.B)
  val pass = RegInit(1.U(2.W))
  val requantized = Reg(Bool())
  val badId = Reg(Bool())
  val n = req.n(cntBits - 1, 0)
  /** M: the number of selected values. */
  val m = Mux(cur.vThresh || cur.k === 0.U || cur.k >= req.n, req.n, cur.k)(cntBits - 1, 0)

  /** K banks by list position (position j in bank j % K, row j / K), so that a beat of
    * up to K consecutive positions reads or writes each bank at most once. */
  private val bankRows = (p.maxTokens + K - 1) / K
  private val bankRowBits = log2Ceil(bankRows).max(1)
  private class Banked[T <: Data](gen: T) {
    val banks = Seq.fill(K)(Mem(bankRows, gen))
    private def bankOf(j: UInt): UInt = if (K == 1) 0.U else j(kBits - 1, 0)
    private def rowOf(j: UInt): UInt = low(j >> kBits, bankRowBits)
    /** Positions j0 .. j0 + K - 1 (each bank read once, at the position it holds). */
    def read(j0: UInt): Vec[T] = {
      val j = j0.pad(cntBits + 1)
      val perBank = VecInit((0 until K).map { b =>
        val off = if (K == 1) 0.U else (b.U(kBits.W) - bankOf(j))(kBits - 1, 0)
        banks(b)(rowOf(j + off))
      })
      VecInit((0 until K).map(i => perBank(bankOf(j + i.U))))
    }
    /** Positions j0 + i for i < count get data(i). */
    def write(j0: UInt, count: UInt, data: Vec[T]): Unit = {
      val j = j0.pad(cntBits + 1)
      for (b <- 0 until K) {
        val off = if (K == 1) 0.U else (b.U(kBits.W) - bankOf(j))(kBits - 1, 0)
        when(off < count) { banks(b)(rowOf(j + off)) := data(off) }
      }
    }
  }
  private val s1Buf = new Banked(SInt(scoreBits.W))
  /** The group's K rows by list position (MSB plane: fetched by head 0; LSB plane: by the
    * first head that requantizes); the group's later heads read them here, not in DRAM. */
  private val rowBits = p.maxRowBursts * p.burstBits
  private val msbRows = new Banked(UInt(rowBits.W))
  private val lsbRows = new Banked(UInt(rowBits.W))
  val rowIn   = RegInit(0.U(cntBits.W)) // rows from DRAM into the unpacker (keys)

  // counters of the current phase
  val issueCnt = RegInit(0.U(cntBits.W)) // rows / scores / positions issued
  val doneCnt  = RegInit(0.U(cntBits.W)) // rows / scores received
  val aux      = RegInit(0.U(cntBits.W)) // third counter (scores into softmax, ids sent)
  val cmdSent  = RegInit(false.B)

  // ---------------- the next ATTEND's token list, fetched ahead ----------------
  /** The next request, taken from `reqIn` while this request's last head runs its keys
    * (`nHeld`); its list is fetched into the next slot while the key rows of this one are
    * in flight or computed. `pOwn`: the list being fetched ahead is the running request's
    * (it became `req` in `idle`); its `list` state waits for the rest. */
  val nReq    = Reg(new Request(p))
  val nHeld   = RegInit(false.B)
  val pOwn    = RegInit(false.B)
  val pIssue  = RegInit(0.U(cntBits.W)) // list rows issued
  val pDone   = RegInit(0.U(cntBits.W)) // list rows received
  val pBad    = RegInit(false.B)        // an id the importance buffer cannot hold
  val pSlot   = RegInit(0.U(bank.slotBits.W)) // the slot it goes to (the next one)
  /** Key rows issued and not yet delivered; of them, those issued before the list's first
    * row (the fetcher delivers in order: these rows, then the list rows, then the rest). */
  val kPend   = RegInit(0.U((cntBits + 1).W))
  val kBefore = RegInit(0.U((cntBits + 1).W))

  // ---------------- the MSB row buffer's fill ----------------
  /** `fillFetch` fetches the K MSB rows of one request at a time into `msbRows` (`fIn`
    * rows in so far): the current request's once it reaches its keys, then, during its
    * last head, the next request's (taken ahead, below, its list all in), each row
    * written only once the running head no longer reads that position (`msbFree`). */
  val fAct      = RegInit(false.B) // a fill is running
  val fNext     = RegInit(false.B) // the fill (running or done) is the next request's
  val nFilled   = RegInit(false.B) // the next request's rows are all in
  val curFilled = RegInit(false.B) // the current request's rows are all in
  val fN      = RegInit(0.U(cntBits.W))
  val fBase   = RegInit(0.U(p.dramAddrBits.W))
  val fBursts = RegInit(0.U(RowFetcher.rowBurstBits(p).W))
  val fSlot   = RegInit(0.U(bank.slotBits.W))
  val fIssue  = RegInit(0.U(cntBits.W))
  val fIn     = RegInit(0.U(cntBits.W))

  // defaults
  reqIn.ready := false.B
  ids.valid := false.B
  ids.bits.id := 0.U
  ids.bits.last := false.B
  selIds := in(CtrlState.tkIds)
  /** The response word the front end offers, and whether the controller took it. */
  val fWordValid = WireDefault(false.B)
  val fWord = WireDefault(0.U(p.wordBits.W))
  val fWordLast = WireDefault(false.B)
  val fWordFire = WireDefault(false.B)

  keyFetch.io.rows.valid := false.B
  keyFetch.io.rows.bits.count := 1.U
  keyFetch.io.rows.bits.rows := VecInit(Seq.tabulate(K)(i => fetchRow(p, issueCnt + i.U, req.listBase, 1.U)))
  keyFetch.io.out.ready := false.B
  keyFetch.io.maxRows := 1.U
  keyUnpack.io.in.valid := false.B
  keyUnpack.io.in.bits.rows := keyFetch.io.out.bits.rows
  keyUnpack.io.in.bits.count := keyFetch.io.out.bits.count
  keyUnpack.io.in.bits.bits := 0.U
  keyUnpack.io.in.bits.isSigned := true.B
  keyUnpack.io.out.ready := false.B
  dot.io.query.valid := false.B
  dot.io.query.bits.q := cur.query
  dot.io.query.bits.d := low(req.d, p.dimBits) // D <= maxHeadDim: checked at the intake
  dot.io.keys.valid := false.B
  dot.io.keys.bits.k := keyUnpack.io.out.bits.elems
  dot.io.keys.bits.count := keyUnpack.io.out.bits.count
  dot.io.keys.bits.last := false.B
  dot.io.scores.ready := false.B
  softmax.io.cfg.scoreScale := cur.scoreScale
  softmax.io.cfg.scoreShift := cur.scoreShift
  softmax.io.bank := slot
  softmax.io.scores.valid := false.B
  softmax.io.scores.bits.s := dot.io.scores.bits.s
  softmax.io.scores.bits.count := dot.io.scores.bits.count
  softmax.io.scores.bits.last := false.B
  softmax.io.summary.ready := false.B
  rankTopk.io.cmd.valid := false.B
  rankTopk.io.cmd.bits := req.k
  rankTopk.io.in.valid := false.B
  rankTopk.io.in.bits.score.get := 0.U
  rankTopk.io.in.bits.last := false.B
  rankTopk.io.count.ready := false.B
  rankTopk.io.out.ready := false.B
  imp.io.tokReadId := 0.U
  imp.io.headReadId := 0.U
  imp.io.clear.valid := false.B
  imp.io.clear.bits.tok := req.clearTok
  imp.io.clear.bits.head := req.clearHead
  jobs.valid := false.B

  /** Does this command use token importance (and so need ids below maxTokens)? */
  val usesImportance = req.opcode =/= Opcode.attend.U || req.accum
  val isAttend = req.opcode === Opcode.attend.U || req.opcode === Opcode.attendGroup.U

  // ---------------- idle: take a request ----------------
  when(in(CtrlState.idle)) {
    reqIn.ready := !nHeld
    when(reqIn.fire || nHeld) {
      val r = Mux(nHeld, nReq, reqIn.bits)
      when(nHeld) {
        nHeld := false.B
        pOwn := true.B // its list is (being) fetched into the slot it takes
      }
      // its MSB rows: filled ahead (wholly or in part: the fill goes on as its own), or
      // filled once it reaches its keys
      curFilled := nHeld && fNext && nFilled
      fNext := false.B
      nFilled := false.B
      req := r
      g := 0.U
      lsbCached := false.B
      pass := 1.U
      requantized := false.B
      badId := false.B
      issueCnt := 0.U
      doneCnt := 0.U
      aux := 0.U
      cmdSent := false.B
      rowIn := 0.U
      // ATTENDs overlap the back end; everything else waits for it to drain
      when(!r.error && (r.opcode === Opcode.attend.U || r.opcode === Opcode.attendGroup.U)) {
        goto(CtrlState.waitSlot)
      }.otherwise { goto(CtrlState.drain) }
    }
  }

  when(in(CtrlState.drain)) {
    when(backDrained) {
      when(req.error || badId) {
        goto(CtrlState.respError)
      }.otherwise {
        switch(req.opcode) {
          is(Opcode.topkTokens.U)     { goto(CtrlState.list) }
          is(Opcode.topkHeads.U)      { goto(CtrlState.tkScores) }
          is(Opcode.clear.U)          { goto(CtrlState.clear) }
          is(Opcode.readImportance.U) { goto(CtrlState.list) }
        }
      }
    }
  }

  when(in(CtrlState.waitSlot)) {
    when(!bank.slotBusy(slot)) { goto(CtrlState.loadQuery) }
  }

  when(in(CtrlState.loadQuery)) {
    dot.io.query.valid := true.B
    when(dot.io.query.fire) { goto(CtrlState.list) }
  }

  // ---------------- token list fetch ----------------
  /** Writes the list row on `keyFetch.io.out` as row `row` of slot `s`; true when one of
    * its ids below `n` is one the importance buffer cannot hold and `checkIds` is set. */
  private def listRowIn(s: UInt, row: UInt, n: UInt, checkIds: Bool): Bool = {
    val rowIds = bank.rowIds(keyFetch.io.out.bits.rows(0))
    bank.write(s, row, rowIds)
    VecInit(Seq.tabulate(bank.idsPerRow) { i =>
      val j = (row << bank.laneBits) + i.U
      j < n && (rowIds(i) >> imp.idBits).orR && checkIds
    }).asUInt.orR
  }
  /** List rows (bursts) of an `n`-token list (padded: with maxTokens >= 2^15 the shifted
    * sum is narrower than cntBits + 1). */
  private def listRows(n: UInt): UInt = ((n +& (bank.idsPerRow - 1).U) >> bank.laneBits).pad(cntBits + 1)(cntBits, 0)
  val listBursts = listRows(req.n)
  // the group's later heads copy the list from the previous slot (the previous head's,
  // which only the front end writes) instead of fetching it again: ahead, during the
  // previous head's keys and summary, once the next slot is free (`cDone` rows copied;
  // the write port is otherwise unused then: a list is fetched ahead only during the last
  // head), and the rest here
  val copyList = isAttend && g =/= 0.U
  val cDone = RegInit(0.U(cntBits.W))
  when(isAttend && !lastHead && (in(CtrlState.keys) || in(CtrlState.summary)) &&
      cDone < listBursts && !bank.slotBusy(slot + 1.U)) {
    bank.write(slot + 1.U, cDone, bank.row(slot, cDone))
    cDone := cDone + 1.U
  }
  when(in(CtrlState.list) && copyList) {
    when(doneCnt < listBursts) {
      bank.write(slot, doneCnt, bank.row(slot - 1.U, doneCnt))
      doneCnt := doneCnt + 1.U
    }
    when(doneCnt +& 1.U >= listBursts) {
      doneCnt := 0.U
      goto(CtrlState.keys)
    }
  }
  when(in(CtrlState.list) && pOwn) {
    // the list was fetched ahead (below): wait for its last rows
    when(pDone === listBursts) {
      pOwn := false.B
      pIssue := 0.U
      pDone := 0.U
      badId := pBad
      goto(Mux(pBad, CtrlState.drain, CtrlState.keys))
    }
  }
  when(in(CtrlState.list) && !copyList && !pOwn) {
    // up to K list bursts a beat out; one list row a cycle into the bank
    val listLeft = listBursts - issueCnt
    keyFetch.io.rows.valid := issueCnt < listBursts
    keyFetch.io.rows.bits.count := Mux(listLeft > K.U, K.U, listLeft)(cBits - 1, 0)
    when(keyFetch.io.rows.fire) { issueCnt := issueCnt + keyFetch.io.rows.bits.count }
    keyFetch.io.out.ready := true.B
    when(keyFetch.io.out.fire) {
      when(listRowIn(slot, doneCnt, req.n, usesImportance)) { badId := true.B }
      doneCnt := doneCnt + 1.U
    }
    val allIn = doneCnt === listBursts
    when(allIn) {
      issueCnt := 0.U
      doneCnt := 0.U
      when(badId) {
        goto(CtrlState.drain) // then the error response, in order
      }.elsewhen(isAttend) {
        goto(CtrlState.keys)
      }.elsewhen(req.opcode === Opcode.topkTokens.U) {
        goto(CtrlState.tkScores)
      }.otherwise {
        goto(CtrlState.respHeader)
      }
    }
  }

  // ---------------- key passes ----------------
  val keyBits = Mux(pass === 1.U, req.kMsbBits, req.kLsbBits)
  /** This pass reads the group's row buffer instead of DRAM (pass 1 always: the fill
    * below writes the MSB rows there; pass 2 once a head of the group fetched the LSBs). */
  val fromRows = Mux(pass === 1.U, true.B, lsbCached)
  /** Rows of the current request in the MSB row buffer (positions 0 .. avail-1). */
  val avail = Wire(UInt((cntBits + 1).W))
  /** Pass 1 waits for the next beat's rows to be filled (status only). */
  val keyRowsWait = WireDefault(false.B)
  /** Keys left to issue / to deliver, capped at a beat. */
  private def upTo(left: UInt, cap: UInt): UInt = Mux(left > cap, cap, left)(cBits - 1, 0)
  when(in(CtrlState.keys) && fromRows) {
    // rows of positions 0..N-1 from the row buffer, a beat of keysPerBeat a cycle
    val rows = Mux(pass === 1.U, msbRows.read(issueCnt), lsbRows.read(issueCnt))
    val cnt = upTo(n - issueCnt, perBeat)
    val rowsIn = pass =/= 1.U || issueCnt +& cnt <= avail // (pass 1: the beat's rows filled)
    keyUnpack.io.in.valid := issueCnt < n && rowsIn
    keyRowsWait := issueCnt < n && !rowsIn
    keyUnpack.io.in.bits.rows := rows
    keyUnpack.io.in.bits.count := cnt
    when(keyUnpack.io.in.fire) { issueCnt := issueCnt + keyUnpack.io.in.bits.count }
  }
  /** The list fetched ahead is partly issued: key rows wait until it is all issued. */
  val pListBursts = Wire(UInt((cntBits + 1).W))
  val pAct = nHeld || pOwn
  val listMid = pAct && pIssue =/= 0.U && pIssue < pListBursts
  /** The next delivered row is a list row fetched ahead. */
  val listNext = pAct && kBefore === 0.U && pDone < pIssue
  val keyIssueWant = in(CtrlState.keys) && !fromRows && issueCnt < n && !listMid
  when(in(CtrlState.keys) && !fromRows) {
    // issue: the token ids of positions issueCnt.., up to K a beat (only pass 2 reads
    // DRAM here: pass 1 reads the row buffer)
    val base = req.kLsbBase
    val bursts = AttentionController.rowBursts(p, req.d, req.kLsbBits)
    keyFetch.io.rows.valid := keyIssueWant
    keyFetch.io.rows.bits.count := upTo(n - issueCnt, K.U)
    keyFetch.io.rows.bits.rows := VecInit(Seq.tabulate(K)(i => fetchRow(p, bank.tok(slot, issueCnt + i.U), base, bursts)))
    // (the port also carries the list rows fetched ahead, when the keys do not want it:
    // those are not key rows)
    when(keyFetch.io.rows.fire && keyIssueWant) { issueCnt := issueCnt + keyFetch.io.rows.bits.count }
    // rows -> unpack, and into the row buffer for the group's later heads; beats aligned
    // to keysPerBeat positions (so a beat never spans two rows of a softmax bank)
    // (and never past the key rows due before the list rows fetched ahead)
    val align = perBeat - (rowIn & (perBeat - 1.U))
    keyFetch.io.maxRows := Mux(kBefore =/= 0.U && kBefore < align, kBefore, align)(cBits - 1, 0)
    keyUnpack.io.in.valid := keyFetch.io.out.valid && !listNext
    keyFetch.io.out.ready := keyUnpack.io.in.ready && !listNext
    when(keyFetch.io.out.fire && !listNext) {
      val beat = keyFetch.io.out.bits
      lsbRows.write(rowIn, beat.count, beat.rows)
      rowIn := rowIn + beat.count
    }
  }
  when(in(CtrlState.keys)) {
    keyUnpack.io.in.bits.bits := keyBits
    keyUnpack.io.in.bits.isSigned := pass === 1.U
    // elements -> dot (pass 1: msb << kLsbBits; pass 2: the unsigned lsb as is)
    val beatIn = keyUnpack.io.out.bits
    dot.io.keys.valid := keyUnpack.io.out.valid
    keyUnpack.io.out.ready := dot.io.keys.ready
    dot.io.keys.bits.k := Mux(pass === 1.U,
      VecInit(beatIn.elems.map(row => VecInit(row.map(e => PlaneUnpacker.combineKey(e, 0.S, req.kLsbBits, false.B))))),
      beatIn.elems)
    dot.io.keys.bits.last := doneCnt + beatIn.count === n
    when(dot.io.keys.fire) { doneCnt := doneCnt + beatIn.count }
    // scores -> softmax (pass 2 adds the pass-1 score)
    val sc = dot.io.scores.bits
    val s1 = s1Buf.read(aux)
    softmax.io.scores.valid := dot.io.scores.valid
    dot.io.scores.ready := softmax.io.scores.ready
    softmax.io.scores.bits.s := Mux(pass === 1.U, sc.s, VecInit(sc.s.zip(s1).map { case (a, b) => (a + b)(scoreBits - 1, 0).asSInt }))
    softmax.io.scores.bits.count := sc.count
    softmax.io.scores.bits.last := sc.last
    when(softmax.io.scores.fire) {
      when(pass === 1.U) { s1Buf.write(aux, sc.count, sc.s) }
      aux := aux + sc.count
      when(sc.last) { goto(CtrlState.summary) }
    }
  }

  val summary = Reg(new SoftmaxSummary(p))
  when(in(CtrlState.summary)) {
    softmax.io.summary.ready := true.B
    when(softmax.io.summary.fire) {
      val pm = softmax.io.summary.bits.pmax
      summary := softmax.io.summary.bits
      issueCnt := 0.U
      doneCnt := 0.U
      aux := 0.U
      rowIn := 0.U
      when(pass === 2.U) { lsbCached := true.B }
      when(pass === 1.U && req.requant && req.kLsbBits =/= 0.U && pm < cur.threshold) {
        pass := 2.U // this pass is dropped; its bank is overwritten by pass 2
        requantized := true.B
        goto(CtrlState.keys)
      }.otherwise {
        goto(CtrlState.handoff)
      }
    }
  }

  when(in(CtrlState.handoff)) {
    jobs.valid := true.B
    when(jobs.fire) {
      bank.slotBusy(slot) := true.B
      slot := slot + 1.U
      when(lastHead) {
        goto(CtrlState.idle)
      }.otherwise {
        // the group's next head: its own slot, the list copied (partly or wholly ahead:
        // `cDone`), keys from the row buffer
        g := g + 1.U
        pass := 1.U
        requantized := false.B
        issueCnt := 0.U
        doneCnt := cDone
        cDone := 0.U
        aux := 0.U
        rowIn := 0.U
        goto(CtrlState.waitSlot)
      }
    }
  }
  val job = jobs.bits
  job.slot := slot
  job.tag := req.tag
  job.n := n
  job.m := m
  job.vThresh := cur.vThresh
  job.vThr := cur.k
  job.headId := cur.headId
  job.isGroup := req.isGroup
  job.first := g === 0.U
  job.lastOfGroup := lastHead
  job.heads := req.heads
  job.d := req.d
  job.vBits := req.vBits
  job.accum := req.accum
  job.vBase := req.vBase
  job.startCycle := req.startCycle
  job.requantized := requantized
  job.pmax := summary.pmax
  job.recip := summary.recip

  // ---------------- the next ATTEND's list, fetched ahead ----------------
  // Taken while this request's last head runs its keys or waits for its summary (so the
  // next request's slot is slot + 1); only an ATTEND or ATTEND_GROUP without an error (the
  // other commands wait for the back end in order).
  val pReq  = Mux(pOwn, req, nReq)
  pListBursts := listRows(pReq.n)
  val nextAttend = !reqIn.bits.error &&
    (reqIn.bits.opcode === Opcode.attend.U || reqIn.bits.opcode === Opcode.attendGroup.U)
  when(isAttend && lastHead && (in(CtrlState.keys) || in(CtrlState.summary)) && !nHeld && !pOwn &&
      reqIn.valid && nextAttend) {
    reqIn.ready := true.B
    nReq := reqIn.bits
    nHeld := true.B
    pSlot := slot + 1.U
    pIssue := 0.U
    pDone := 0.U
    pBad := false.B
  }
  // issue: up to K list rows a beat, when the key path does not issue and the slot is
  // free: also once the request owns the list (`pOwn`), since it may still be in
  // `waitSlot` with the back end reading that slot's list for an earlier request's values
  val ownList = in(CtrlState.list) && !copyList && !pOwn
  val pCanIssue = pAct && pIssue < pListBursts && !keyIssueWant && !ownList && !bank.slotBusy(pSlot)
  val kDeliv = Mux(in(CtrlState.keys) && !fromRows && keyFetch.io.out.fire && !listNext,
    keyFetch.io.out.bits.count, 0.U)
  val kIssued = Mux(keyIssueWant && keyFetch.io.rows.fire,
    keyFetch.io.rows.bits.count, 0.U)
  kPend := kPend + kIssued - kDeliv
  kBefore := Mux(kBefore > kDeliv, kBefore - kDeliv, 0.U)
  when(pCanIssue) {
    val left = pListBursts - pIssue
    keyFetch.io.rows.valid := true.B
    keyFetch.io.rows.bits.count := Mux(left > K.U, K.U, left)(cBits - 1, 0)
    keyFetch.io.rows.bits.rows := VecInit(Seq.tabulate(K)(i => fetchRow(p, pIssue + i.U, pReq.listBase, 1.U)))
    when(keyFetch.io.rows.fire) {
      pIssue := pIssue + keyFetch.io.rows.bits.count
      // the key rows in flight now come before the list rows
      when(pIssue === 0.U) { kBefore := kPend - kDeliv }
    }
  }
  // delivery: one list row a cycle into the slot, in order after the key rows before it
  when(listNext) {
    keyFetch.io.maxRows := 1.U
    keyFetch.io.out.ready := true.B
    when(keyFetch.io.out.fire) {
      when(listRowIn(pSlot, pDone, pReq.n, pReq.accum)) { pBad := true.B }
      pDone := pDone + 1.U
    }
  }

  // ---------------- the MSB row buffer's fill (declared above) ----------------
  avail := Mux(curFilled, n.pad(cntBits + 1), Mux(fAct && !fNext, fIn.pad(cntBits + 1), 0.U))
  /** Positions of `msbRows` the current request no longer reads: none before its last
    * head's pass 1, those below `issueCnt` during it, all after it. */
  val msbReading = isAttend && pass === 1.U &&
    (in(CtrlState.waitSlot) || in(CtrlState.loadQuery) || in(CtrlState.list) || in(CtrlState.keys))
  val msbFree = Mux(!isAttend || in(CtrlState.idle), p.maxTokens.U,
    Mux(!lastHead, 0.U, Mux(msbReading, Mux(in(CtrlState.keys), issueCnt.pad(cntBits + 1), 0.U), p.maxTokens.U)))
  // start: the current request's (at its keys, nothing filled for it), or the next one's
  // (held, its list all in and usable, the current one's rows all in; not in the idle
  // cycle that makes it the current one, whose own fill starts at its keys)
  val fStartCur  = isAttend && in(CtrlState.keys) && !curFilled && !fAct && !fNext
  val fStartNext = nHeld && !in(CtrlState.idle) && !fAct && !fNext && curFilled &&
    pIssue === pListBursts && pDone === pListBursts && !pBad
  when(fStartCur || fStartNext) {
    fAct := true.B
    fNext := fStartNext
    fN := Mux(fStartNext, nReq.n(cntBits - 1, 0), n)
    fBase := Mux(fStartNext, nReq.kMsbBase, req.kMsbBase)
    fBursts := Mux(fStartNext, AttentionController.rowBursts(p, nReq.d, nReq.kMsbBits),
      AttentionController.rowBursts(p, req.d, req.kMsbBits))
    fSlot := Mux(fStartNext, pSlot, slot)
    fIssue := 0.U
    fIn := 0.U
  }
  // issue: up to K rows a beat, by the token ids of the filled request's slot
  fillFetch.io.rows.valid := fAct && fIssue < fN
  fillFetch.io.rows.bits.count := upTo(fN - fIssue, K.U)
  fillFetch.io.rows.bits.rows := VecInit(Seq.tabulate(K)(i => fetchRow(p, bank.tok(fSlot, fIssue + i.U), fBase, fBursts)))
  when(fillFetch.io.rows.fire) { fIssue := fIssue + fillFetch.io.rows.bits.count }
  // delivery: up to K rows a beat into the buffer, the next request's only where free
  fillFetch.io.maxRows := K.U
  val fBeat = fillFetch.io.out.bits
  fillFetch.io.out.ready := fAct && (!fNext || fIn +& fBeat.count <= msbFree)
  when(fillFetch.io.out.fire) {
    msbRows.write(fIn, fBeat.count, fBeat.rows)
    fIn := fIn + fBeat.count
    when(fIn +& fBeat.count === fN) {
      fAct := false.B
      // (the next request may become the current one in this very cycle)
      when(fNext && !(in(CtrlState.idle) && nHeld)) { nFilled := true.B }.otherwise { curFilled := true.B }
    }
  }

  // ---------------- ranking (TOPK_TOKENS, TOPK_HEADS) ----------------
  when(in(CtrlState.tkScores)) {
    val isTok = req.opcode === Opcode.topkTokens.U
    when(req.n === 0.U) {
      goto(CtrlState.respHeader) // nothing to rank: count 0
    }.otherwise {
      rankTopk.io.cmd.valid := !cmdSent
      when(rankTopk.io.cmd.fire) { cmdSent := true.B }
      imp.io.tokReadId := low(bank.tok(slot, issueCnt), imp.idBits)
      imp.io.headReadId := low(issueCnt, log2Ceil(p.maxHeads).max(1))
      rankTopk.io.in.valid := cmdSent && issueCnt < n
      rankTopk.io.in.bits.score.get := Mux(isTok, imp.io.tokReadData, imp.io.headReadData)
      rankTopk.io.in.bits.last := issueCnt === n - 1.U
      when(rankTopk.io.in.fire) {
        issueCnt := issueCnt + 1.U
        when(rankTopk.io.in.bits.last) { goto(CtrlState.tkCount) }
      }
    }
  }
  val rankCount = Reg(UInt(cntBits.W))
  when(in(CtrlState.tkCount)) {
    rankTopk.io.count.ready := true.B
    when(rankTopk.io.count.fire) {
      rankCount := rankTopk.io.count.bits
      goto(CtrlState.respHeader)
    }
  }

  // ---------------- CLEAR ----------------
  when(in(CtrlState.clear)) {
    imp.io.clear.valid := true.B
    goto(CtrlState.respHeader)
  }

  // ---------------- responses (not ATTEND) ----------------
  when(in(CtrlState.respError)) {
    fWordValid := true.B
    fWord := ResponseWords.error(req.tag, req.opcode)
    fWordLast := true.B
    when(fWordFire) { finish := true.B }
  }

  val isRank   = req.opcode === Opcode.topkTokens.U || req.opcode === Opcode.topkHeads.U
  val isRead   = req.opcode === Opcode.readImportance.U
  val rankKept = Mux(req.n === 0.U, 0.U, rankCount)
  when(in(CtrlState.respHeader)) {
    fWordValid := true.B
    val count = Mux(isRank, rankKept, Mux(isRead, n, 0.U))
    fWord := ResponseWords.header(req.opcode, req.tag, count)
    // a header is the whole packet for CLEAR and for empty rankings / reads
    val alone = count === 0.U
    fWordLast := alone
    when(fWordFire) {
      aux := 0.U
      when(alone) {
        finish := true.B
      }.elsewhen(isRank) {
        goto(CtrlState.tkIds)
      }.otherwise {
        goto(CtrlState.readImp)
      }
    }
  }
  when(in(CtrlState.tkIds)) {
    val isTok = req.opcode === Opcode.topkTokens.U
    ids.valid := rankTopk.io.out.valid
    rankTopk.io.out.ready := ids.ready
    val pos = rankTopk.io.out.bits.position
    ids.bits.id := Mux(isTok, bank.tok(slot, pos), pos.pad(ResponseWords.idBits))
    ids.bits.last := rankTopk.io.out.bits.last
    when(ids.fire && ids.bits.last) { finish := true.B }
  }
  when(in(CtrlState.readImp)) {
    imp.io.tokReadId := low(bank.tok(slot, aux), imp.idBits)
    fWordValid := true.B
    fWord := ResponseWords.importance(imp.io.tokReadData)
    fWordLast := aux === n - 1.U
    when(fWordFire) {
      aux := aux + 1.U
      when(fWordLast) { finish := true.B }
    }
  }
  when(finish) { goto(CtrlState.idle) }
}
