package spatten

import chisel3._
import chisel3.util._

/** Up to [[RowFetcher.width]] consecutive bursts of one row, delivered by a
  * [[RowFetcher]] in request order: burst `i` of the group in `data(i)`, `i < count`. */
class FetchedGroup(p: SpAttenParams) extends Bundle {
  val data      = Vec(RowFetcher.width(p), UInt(p.burstBits.W))
  val count     = UInt(log2Ceil(RowFetcher.width(p) + 1).W)
  /** The group ends its row. */
  val lastOfRow = Bool()
}

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
  /** Bursts delivered on `groups` since reset (wraps). */
  val delivered = UInt(32.W)
  /** Requests issued whose bursts have not been delivered yet. */
  val inflight  = UInt(16.W)
}

/** The multi-channel DRAM read engine shared by the token-list, key and value fetches.
  *
  * Rows come as a stream of [[FetchRow]]s, each with its own plane base and size (so one
  * engine can interleave rows of different planes); row `r` occupies `rowBursts` whole
  * bursts from byte address `base + r * rowBursts * burstBytes` (SPEC.md section 4: plane
  * rows start on a burst and the stride is whole bursts). Every burst goes to its channel
  * `(addr / burstBytes) % numChannels`.
  *
  * Micro-architecture, `W = min(numChannels, maxRowBursts)` bursts wide:
  *  - Address generation: every cycle the next group of up to `W` consecutive bursts of the
  *    current row (consecutive bursts lie on consecutive channels, so a group touches each
  *    channel at most once). The group issues when every channel it touches has a credit
  *    and room in its two-entry request queue; one order-queue entry records its first
  *    channel, size and whether it ends the row.
  *  - Per channel: the request queue drains into the DRAM port on its own (so one slow
  *    channel does not stop the others); a response queue of `maxInflight` bursts takes
  *    the responses, always able to since a channel has at most `maxInflight` requests
  *    issued and not yet delivered (its credits). The port is never back-pressured.
  *  - In-order merge: the head order entry's bursts are taken from their channels' queues
  *    together, one group a cycle.
  * With `maxInflight` requests in flight per channel the engine streams `W` bursts a cycle
  * (rows of at least `W` bursts) as long as each channel's round trip stays below about
  * `maxInflight` cycles per burst it delivers.
  *
  * `idle` says that every issued request has been delivered and no row is being issued.
  *
  * @param p the hardware parameters
  */
class RowFetcher(p: SpAttenParams) extends Module {
  private val rowBurstBits = RowFetcher.rowBurstBits(p)
  val width: Int = RowFetcher.width(p)
  val io = IO(new Bundle {
    val rows      = Flipped(Decoupled(new FetchRow(p)))
    val groups    = Decoupled(new FetchedGroup(p))
    val dram      = Vec(p.numChannels, new DramReadPort(p))
    val idle      = Output(Bool())
    val status    = Output(new FetcherStatus(p))
  })

  private val nCh      = p.numChannels
  private val burstLsb = log2Ceil(p.burstBytes)
  private val chBits   = log2Ceil(nCh)
  private val burstAddrBits = p.dramAddrBits - burstLsb
  private val creditBits = log2Ceil(p.maxInflight + 1)
  private val cntBits  = log2Ceil(width + 1)

  /** (c - c0) mod numChannels: the place of channel c in a group starting at c0. */
  private def offset(c: Int, c0: UInt): UInt =
    if (chBits == 0) 0.U else (c.U(chBits.W) - c0)(chBits - 1, 0)

  // ---- address generation: the current row and the next burst within it ----
  val rowValid = RegInit(false.B)
  val rowAddr  = Reg(UInt(burstAddrBits.W)) // burst number of the row's first burst
  val burstIdx = Reg(UInt(rowBurstBits.W))
  val rowLen   = Reg(UInt(rowBurstBits.W))

  val curBurst  = rowAddr + burstIdx
  val c0        = if (chBits == 0) 0.U else curBurst(chBits - 1, 0)
  val remaining = rowLen - burstIdx
  val k         = Mux(remaining > width.U, width.U, remaining)(cntBits - 1, 0)
  val lastGroup = remaining <= width.U

  class OrderEntry extends Bundle {
    val c0    = UInt(chBits.max(1).W)
    val count = UInt(cntBits.W)
    val last  = Bool()
  }
  val credits = RegInit(VecInit(Seq.fill(nCh)(0.U(creditBits.W))))
  val order   = Module(new Queue(new OrderEntry, nCh * p.maxInflight))
  val reqQs   = Seq.fill(nCh)(Module(new Queue(UInt(p.dramAddrBits.W), 2)))
  val respQs  = Seq.fill(nCh)(Module(new Queue(UInt(p.burstBits.W), p.maxInflight)))

  val needed = VecInit((0 until nCh).map(c => offset(c, c0) < k))
  val chOk   = VecInit((0 until nCh).map(c =>
    !needed(c) || (credits(c) < p.maxInflight.U && reqQs(c).io.enq.ready)))
  val issue  = rowValid && order.io.enq.ready && chOk.asUInt.andR

  for (c <- 0 until nCh) {
    reqQs(c).io.enq.valid := issue && needed(c)
    reqQs(c).io.enq.bits  := Cat(curBurst + offset(c, c0), 0.U(burstLsb.W))
    io.dram(c).req <> reqQs(c).io.deq
    respQs(c).io.enq <> io.dram(c).resp
  }
  order.io.enq.valid      := issue
  order.io.enq.bits.c0    := c0
  order.io.enq.bits.count := k
  order.io.enq.bits.last  := lastGroup

  // Take the next row when there is none or the current one's last group issues now.
  io.rows.ready := !rowValid || (issue && lastGroup)
  when(issue) { burstIdx := burstIdx + k }
  when(issue && lastGroup) { rowValid := false.B }
  when(io.rows.fire) {
    val r = io.rows.bits
    rowValid := r.rowBursts =/= 0.U
    rowAddr  := (r.base >> burstLsb) + r.index * r.rowBursts
    rowLen   := r.rowBursts
    burstIdx := 0.U
  }

  // ---- in-order merge ----
  val head = order.io.deq.bits
  val headNeeds = VecInit((0 until nCh).map(c => offset(c, head.c0) < head.count))
  val headReady = (0 until nCh).map(c => !headNeeds(c) || respQs(c).io.deq.valid).reduce(_ && _)
  io.groups.valid := order.io.deq.valid && headReady
  io.groups.bits.count := head.count
  io.groups.bits.lastOfRow := head.last
  val respData = VecInit(respQs.map(_.io.deq.bits))
  for (i <- 0 until width) {
    val ch = if (chBits == 0) 0.U else (head.c0 + i.U)(chBits - 1, 0)
    io.groups.bits.data(i) := respData(ch)
  }
  order.io.deq.ready := io.groups.fire
  for (c <- 0 until nCh) {
    respQs(c).io.deq.ready := io.groups.fire && headNeeds(c)
    val inc = issue && needed(c)
    val dec = io.groups.fire && headNeeds(c)
    credits(c) := credits(c) + inc.asUInt - dec.asUInt
  }

  // ---- status ----
  val issuedCnt    = RegInit(0.U(32.W))
  val deliveredCnt = RegInit(0.U(32.W))
  when(issue) { issuedCnt := issuedCnt + k }
  when(io.groups.fire) { deliveredCnt := deliveredCnt + head.count }
  io.status.issued    := issuedCnt
  io.status.delivered := deliveredCnt
  io.status.inflight  := (issuedCnt - deliveredCnt)(15, 0)
  io.idle := !rowValid && !order.io.deq.valid
}

object RowFetcher {
  /** Bursts a [[RowFetcher]] issues and delivers a cycle: consecutive bursts of a row lie
    * on distinct channels, and a row has at most `maxRowBursts`. */
  def width(p: SpAttenParams): Int = math.min(p.numChannels, p.maxRowBursts)

  /** Width of a row's burst count (0..maxRowBursts). */
  def rowBurstBits(p: SpAttenParams): Int = log2Ceil(p.maxRowBursts + 1).max(1)
}
