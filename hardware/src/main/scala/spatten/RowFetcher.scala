package spatten

import chisel3._
import chisel3.util._

/** One burst delivered by a [[RowFetcher]], in request order. */
class FetchedBurst(p: SpAttenParams) extends Bundle {
  val data      = UInt(p.burstBits.W)
  /** The final burst of its row. */
  val lastOfRow = Bool()
}

/** Progress counters of a [[RowFetcher]], for testbenches that must name a stalled stage. */
class FetcherStatus(p: SpAttenParams) extends Bundle {
  /** Requests issued to DRAM since reset (wraps). */
  val issued    = UInt(32.W)
  /** Bursts delivered on `bursts` since reset (wraps). */
  val delivered = UInt(32.W)
  /** Requests issued whose bursts have not been delivered yet. */
  val inflight  = UInt(16.W)
}

/** The multi-channel DRAM read engine shared by the token-list, key and value fetches.
  *
  * Rows are named by an index stream (`rows`: a token id, or for a linear fetch a burst
  * number); row `r` occupies `rowBursts` whole bursts from byte address
  * `base + r * rowBursts * burstBytes` (SPEC.md section 4: plane rows start on a burst and
  * the stride is whole bursts). Every burst goes to its channel
  * `(addr / burstBytes) % numChannels`.
  *
  * Micro-architecture: one address a cycle (a row's bursts back to back, then the next
  * row's). Each channel has a response queue of `maxInflight` bursts and a credit counter:
  * a request is issued only while its channel has fewer than `maxInflight` requests whose
  * bursts are not yet delivered, so the queue can always take the responses and the DRAM
  * port is never back-pressured by a slow consumer on another channel. An order queue
  * records the channel of every issued request; the merge pops it and takes the burst from
  * that channel's queue, so bursts leave in request order across channels (one a cycle).
  * With `maxInflight` requests in flight per channel the engine streams at one burst a
  * cycle as long as the DRAM round trip stays below `maxInflight` cycles per channel.
  *
  * `base` and `rowBursts` must stay stable while rows are in flight; `idle` says that every
  * issued request has been delivered and no row is being issued.
  *
  * @param p the hardware parameters
  */
class RowFetcher(p: SpAttenParams) extends Module {
  private val rowBurstBits = log2Ceil(p.maxRowBursts + 1).max(1)
  val io = IO(new Bundle {
    val base      = Input(UInt(p.dramAddrBits.W))
    val rowBursts = Input(UInt(rowBurstBits.W))
    val rows      = Flipped(Decoupled(UInt(p.tokenBits.W)))
    val bursts    = Decoupled(new FetchedBurst(p))
    val dram      = Vec(p.numChannels, new DramReadPort(p))
    val idle      = Output(Bool())
    val status    = Output(new FetcherStatus(p))
  })

  private val burstLsb = log2Ceil(p.burstBytes)
  private val chBits   = log2Ceil(p.numChannels)
  private val burstAddrBits = p.dramAddrBits - burstLsb
  private val creditBits = log2Ceil(p.maxInflight + 1)

  // ---- address generation: the current row and the burst within it ----
  val rowValid = RegInit(false.B)
  val rowAddr  = Reg(UInt(burstAddrBits.W)) // burst number of the row's first burst
  val burstIdx = Reg(UInt(rowBurstBits.W))

  val curBurst = rowAddr + burstIdx
  val curCh    = if (chBits == 0) 0.U else curBurst(chBits - 1, 0)
  val curLast  = burstIdx === io.rowBursts - 1.U

  val credits = RegInit(VecInit(Seq.fill(p.numChannels)(0.U(creditBits.W))))
  val order   = Module(new Queue(new Bundle {
    val ch   = UInt(chBits.max(1).W)
    val last = Bool()
  }, p.numChannels * p.maxInflight))
  val respQs  = Seq.fill(p.numChannels)(Module(new Queue(UInt(p.burstBits.W), p.maxInflight)))

  val chFree = VecInit(credits.map(_ < p.maxInflight.U))(curCh)
  val reqReady = VecInit(io.dram.map(_.req.ready))(curCh)
  val issue = rowValid && chFree && order.io.enq.ready && reqReady

  for (c <- 0 until p.numChannels) {
    io.dram(c).req.valid := rowValid && chFree && order.io.enq.ready && curCh === c.U
    io.dram(c).req.bits  := Cat(curBurst, 0.U(burstLsb.W))
    respQs(c).io.enq <> io.dram(c).resp
  }
  order.io.enq.valid     := issue
  order.io.enq.bits.ch   := curCh
  order.io.enq.bits.last := curLast

  // Take the next row when there is none or the current one's last burst issues now.
  io.rows.ready := !rowValid || (issue && curLast)
  when(issue) { burstIdx := burstIdx + 1.U }
  when(issue && curLast) { rowValid := false.B }
  when(io.rows.fire) {
    rowValid := io.rowBursts =/= 0.U
    rowAddr  := (io.base >> burstLsb) + io.rows.bits * io.rowBursts
    burstIdx := 0.U
  }

  // ---- in-order merge ----
  val headCh = order.io.deq.bits.ch
  val headValid = VecInit(respQs.map(_.io.deq.valid))(if (chBits == 0) 0.U else headCh)
  io.bursts.valid := order.io.deq.valid && headValid
  io.bursts.bits.data := VecInit(respQs.map(_.io.deq.bits))(if (chBits == 0) 0.U else headCh)
  io.bursts.bits.lastOfRow := order.io.deq.bits.last
  order.io.deq.ready := io.bursts.fire
  for (c <- 0 until p.numChannels) {
    respQs(c).io.deq.ready := io.bursts.ready && order.io.deq.valid &&
      (if (chBits == 0) true.B else headCh === c.U)
    val inc = issue && curCh === c.U
    val dec = io.bursts.fire && (if (chBits == 0) true.B else headCh === c.U)
    credits(c) := credits(c) + inc.asUInt - dec.asUInt
  }

  // ---- status ----
  val issuedCnt    = RegInit(0.U(32.W))
  val deliveredCnt = RegInit(0.U(32.W))
  when(issue) { issuedCnt := issuedCnt + 1.U }
  when(io.bursts.fire) { deliveredCnt := deliveredCnt + 1.U }
  io.status.issued    := issuedCnt
  io.status.delivered := deliveredCnt
  io.status.inflight  := (issuedCnt - deliveredCnt)(15, 0)
  io.idle := !rowValid && !order.io.deq.valid
}
