package spatten

import chisel3._
import chisel3.util._

/** One row to fetch: `rowBursts` (1..maxRowBursts; 0 fetches nothing) whole bursts from
  * byte address `base + index * rowBursts * burstBytes`. */
class FetchRow(p: SpAttenParams) extends Bundle {
  /** A token id, or for a linear fetch (a token list) a burst number. */
  val index     = UInt(p.tokenBits.W)
  val base      = UInt(p.dramAddrBits.W)
  val rowBursts = UInt(RowFetcher.rowBurstBits(p).W)
}

/** Progress counters of a [[RowFetcher]], for testbenches that must name a stalled stage. */
class FetcherStatus(p: SpAttenParams) extends Bundle {
  /** Requests issued to DRAM since reset (wraps). */
  val issued    = UInt(32.W)
  /** Bursts delivered on `out` since reset (wraps). */
  val delivered = UInt(32.W)
  /** Requests issued whose bursts have not been delivered yet. */
  val inflight  = UInt(16.W)
}

/** The multi-channel DRAM read engine shared by the token-list, key and value fetches:
  * up to `K = keysPerCycle` rows a beat in, up to `K` whole rows a beat out, in order.
  *
  * Rows come as beats of [[FetchRows]], each row with its own plane base and size (so one
  * engine can interleave rows of different planes); row `r` occupies `rowBursts` whole
  * bursts from byte address `base + r * rowBursts * burstBytes` (SPEC.md section 4: plane
  * rows start on a burst and the stride is whole bursts). Every burst goes to its channel
  * `(addr / burstBytes) % numChannels`. Rows of 0 bursts are dropped (nothing delivered).
  *
  * Micro-architecture:
  *  - Reorder ring: `S = numChannels * maxInflight` burst slots. A beat is accepted when
  *    the ring has room for all its bursts; each row gets consecutive slots in request
  *    order (its place in the output).
  *  - Issue window: the two oldest accepted beats. Every cycle each channel takes the
  *    oldest burst of the window that lies on it (not all-or-nothing: rows of random token
  *    ids collide on channels, and a channel's collisions only delay that channel) into
  *    its four-entry request queue; per channel, bursts are issued in request order. A beat
  *    leaves the window when all its bursts are issued.
  *  - Per channel: the request queue drains into the DRAM port on its own; a tag FIFO of
  *    `maxInflight` entries (the channel's credits) records each request's ring slot, and
  *    the channel's in-order responses are written straight into the ring (the port is
  *    never back-pressured).
  *  - Delivery ([[RowAssembler]]): the `B` oldest slots of the ring (the window
  *    [[RowFetcher.window]]) are assembled into up to `min(K, maxRows)` complete rows, in
  *    order, on `out`; the slots are freed when it fires.
  * Throughput: up to `numChannels` bursts issued a cycle (one a channel) and `K` rows
  * delivered a cycle (rows within the `B`-slot window), as long as each channel's round
  * trip stays below about `maxInflight` cycles per burst it delivers.
  *
  * `out` is combinational from the ring: while it waits, further rows may complete and
  * its `count` grow (up to `maxRows`); the rows offered never change. `maxRows` (1..K) may
  * change only between beats.
  *
  * `idle` says that every accepted row has been delivered.
  *
  * @param p the hardware parameters
  */
class RowFetcher(p: SpAttenParams) extends Module {
  private val K        = p.keysPerCycle
  private val mrb      = p.maxRowBursts
  private val nCh      = p.numChannels
  private val S        = RowFetcher.ringSlots(p)
  private val B        = RowFetcher.window(p)
  private val sBits    = log2Ceil(S)
  private val burstLsb = log2Ceil(p.burstBytes)
  private val chBits   = log2Ceil(nCh)
  private val burstAddrBits = p.dramAddrBits - burstLsb
  private val rbBits   = RowFetcher.rowBurstBits(p)
  private val cBits    = log2Ceil(K + 1)

  val io = IO(new Bundle {
    val rows    = Flipped(Decoupled(new FetchRows(p)))
    val out     = Decoupled(new RowBeat(p))
    /** The most rows a beat on `out` (1..K). */
    val maxRows = Input(UInt(cBits.W))
    val dram    = Vec(nCh, new DramReadPort(p))
    val idle    = Output(Bool())
    val status  = Output(new FetcherStatus(p))
  })

  /** Ring positions carry one bit more than a slot number: its lap parity. */
  private def slotOf(ptr: UInt): UInt = ptr(sBits - 1, 0)

  // ---- the reorder ring ----
  val head = RegInit(0.U((sBits + 1).W))
  val tail = RegInit(0.U((sBits + 1).W))
  val data = Mem(S, UInt(p.burstBits.W))
  /** Lap marker of the last response written to a slot (bit `slot`): the slot holds the
    * burst of position `ptr` when `got(slot) === !ptr(sBits)`; `ends(slot)`: that burst
    * ends its row. Bit vectors updated through one-hot masks (every channel writes a
    * different slot), not vectors of registers with a decoder per write port: the same
    * flops, far less simulation work (Verilator updated 512 entries per port per cycle). */
  val got  = RegInit(0.U(S.W))
  val ends = RegInit(0.U(S.W))

  // ---- accept: allocate slots ----
  class Entry extends Bundle {
    val addr   = Vec(K, UInt(burstAddrBits.W)) // burst number of each row's first burst
    val slot   = Vec(K, UInt((sBits + 1).W))
    val len    = Vec(K, UInt(rbBits.W))
    val issued = Vec(K, Vec(mrb, Bool()))
  }
  val win      = Reg(Vec(2, new Entry))
  val winValid = RegInit(VecInit(Seq.fill(2)(false.B)))

  val inRows = io.rows.bits.rows
  val inLen  = VecInit(Seq.tabulate(K)(i => Mux(i.U < io.rows.bits.count, inRows(i).rowBursts, 0.U)))
  val inOffs = (0 until K).map(inLen(_)).scanLeft(0.U((sBits + 1).W))((a, l) => a + l)
  val inTotal = inOffs.last
  val used   = tail - head
  val room   = S.U - used
  // the window shifts when its oldest beat is done this cycle: see below
  val entryDone = Wire(Vec(2, Bool()))
  val shift  = winValid(0) && entryDone(0)
  val freeSlot = !winValid(1) || (shift && !winValid(1)) || shift
  io.rows.ready := freeSlot && inTotal <= room

  val newEntry = Wire(new Entry)
  for (i <- 0 until K) {
    newEntry.addr(i) := (inRows(i).base >> burstLsb) + inRows(i).index * inRows(i).rowBursts
    newEntry.slot(i) := tail + inOffs(i)
    newEntry.len(i)  := inLen(i)
    for (b <- 0 until mrb) newEntry.issued(i)(b) := false.B
  }
  when(io.rows.fire) { tail := tail + inTotal }
  assert(!io.rows.valid || (0 until K).map(i => i.U >= io.rows.bits.count || inRows(i).rowBursts <= mrb.U).reduce(_ && _),
    "RowFetcher: a row of more than maxRowBursts bursts")

  // ---- issue: each channel takes the oldest pending burst of the window on it ----
  val reqQs = Seq.fill(nCh)(Module(new Queue(new RowFetcher.Req(p), 4)))
  val tagQs = Seq.fill(nCh)(Module(new Queue(new RowFetcher.Tag(p), p.maxInflight)))
  /** (entry, row, burst) of every window burst, oldest first. */
  private val cands = for (e <- 0 until 2; r <- 0 until K; b <- 0 until mrb) yield (e, r, b)
  val pending = VecInit(cands.map { case (e, r, b) => winValid(e) && b.U < win(e).len(r) && !win(e).issued(r)(b) })
  val burstNo = VecInit(cands.map { case (e, r, b) => win(e).addr(r) + b.U })
  val chanOf  = VecInit(burstNo.map(x => if (chBits == 0) 0.U else x(chBits - 1, 0)))
  val taken   = Wire(Vec(cands.length, Bool()))
  taken := VecInit(Seq.fill(cands.length)(false.B))
  for (c <- 0 until nCh) {
    val want = VecInit(pending.zip(chanOf).map { case (pd, ch) => pd && ch === c.U })
    val any  = want.asUInt.orR
    val pick = PriorityEncoderOH(want.asUInt)
    val q = reqQs(c).io.enq
    q.valid := any
    q.bits.addr := Cat(Mux1H(pick, burstNo), 0.U(burstLsb.W))
    q.bits.tag.ptr := Mux1H(pick, VecInit(cands.map { case (e, r, b) => win(e).slot(r) + b.U }))
    q.bits.tag.end := Mux1H(pick, VecInit(cands.map { case (e, r, b) => win(e).len(r) === (b + 1).U }))
    when(q.fire) { for (i <- cands.indices) when(pick(i)) { taken(i) := true.B } }
  }
  for (e <- 0 until 2) {
    val idx = cands.indices.filter(cands(_)._1 == e)
    entryDone(e) := idx.map(i => !pending(i) || taken(i)).reduce(_ && _)
  }
  // update issued bits, then shift the window / take the new beat
  val next = Wire(Vec(2, new Entry))
  for (e <- 0 until 2) {
    next(e) := win(e)
    for (((ee, r, b), i) <- cands.zipWithIndex if ee == e) when(taken(i)) { next(e).issued(r)(b) := true.B }
  }
  when(shift) {
    win(0) := next(1)
    winValid(0) := winValid(1)
    win(1) := newEntry
    winValid(1) := false.B
    when(io.rows.fire) {
      when(winValid(1)) { win(1) := newEntry; winValid(1) := true.B }
        .otherwise { win(0) := newEntry; winValid(0) := true.B }
    }
  }.otherwise {
    win(0) := next(0)
    win(1) := next(1)
    when(io.rows.fire) {
      when(winValid(0)) { win(1) := newEntry; winValid(1) := true.B }
        .otherwise { win(0) := newEntry; winValid(0) := true.B }
    }
  }

  // ---- per channel: request queue -> DRAM, tags, responses into the ring ----
  for (c <- 0 until nCh) {
    val rq = reqQs(c).io.deq
    val tq = tagQs(c).io
    io.dram(c).req.valid := rq.valid && tq.enq.ready
    io.dram(c).req.bits := rq.bits.addr
    rq.ready := io.dram(c).req.ready && tq.enq.ready
    tq.enq.valid := rq.valid && io.dram(c).req.ready
    tq.enq.bits := rq.bits.tag
    io.dram(c).resp.ready := true.B
    tq.deq.ready := io.dram(c).resp.valid
    when(io.dram(c).resp.valid) {
      data.write(slotOf(tq.deq.bits.ptr), io.dram(c).resp.bits)
    }
    assert(!io.dram(c).resp.valid || tq.deq.valid, "RowFetcher: a response with no request in flight")
  }
  // the ring's marks of this cycle's responses (at most one a channel, each to its own slot)
  private val respOH = (0 until nCh).map { c =>
    Mux(io.dram(c).resp.valid, UIntToOH(slotOf(tagQs(c).io.deq.bits.ptr), S), 0.U(S.W))
  }
  private def marks(bit: Int => Bool): UInt =
    (0 until nCh).map(c => Mux(bit(c), respOH(c), 0.U(S.W))).reduce(_ | _)
  private val written = respOH.reduce(_ | _)
  got  := (got & ~written) | marks(c => !tagQs(c).io.deq.bits.ptr(sBits))
  ends := (ends & ~written) | marks(c => tagQs(c).io.deq.bits.end)

  // ---- delivery ----
  val asm = Module(new RowAssembler(p, B))
  for (w <- 0 until B) {
    val ptr = head + w.U
    asm.io.data(w)  := data.read(slotOf(ptr))
    asm.io.valid(w) := w.U < used && got(slotOf(ptr)) === !ptr(sBits)
    asm.io.end(w)   := ends(slotOf(ptr))
  }
  asm.io.maxRows := io.maxRows
  io.out <> asm.io.out
  when(io.out.fire) { head := head + asm.io.consumed }

  // ---- status ----
  val issuedCnt    = RegInit(0.U(32.W))
  val deliveredCnt = RegInit(0.U(32.W))
  issuedCnt := issuedCnt + PopCount(io.dram.map(_.req.fire))
  when(io.out.fire) { deliveredCnt := deliveredCnt + asm.io.consumed }
  io.status.issued    := issuedCnt
  io.status.delivered := deliveredCnt
  io.status.inflight  := (issuedCnt - deliveredCnt)(15, 0)
  io.idle := !winValid(0) && !winValid(1) && head === tail
}

object RowFetcher {
  /** A request in a channel's queue: the byte address and its tag. */
  class Req(p: SpAttenParams) extends Bundle {
    val addr = UInt(p.dramAddrBits.W)
    val tag  = new Tag(p)
  }
  /** Where a burst's response goes: its ring position, and whether it ends its row. */
  class Tag(p: SpAttenParams) extends Bundle {
    val ptr = UInt((log2Ceil(ringSlots(p)) + 1).W)
    val end = Bool()
  }

  /** Burst slots of the reorder ring: `numChannels * maxInflight`. */
  def ringSlots(p: SpAttenParams): Int = p.numChannels * p.maxInflight

  /** Ring slots the delivery looks at a cycle: `max(maxRowBursts, 2 * numChannels,
    * keysPerCycle)` (at most the ring). */
  def window(p: SpAttenParams): Int =
    math.min(ringSlots(p), Seq(p.maxRowBursts, 2 * p.numChannels, p.keysPerCycle).max)

  /** Width of a row's burst count (0..maxRowBursts). */
  def rowBurstBits(p: SpAttenParams): Int = log2Ceil(p.maxRowBursts + 1).max(1)
}
