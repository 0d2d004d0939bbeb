package spatten

import chisel3._
import chisel3.experimental.IntParam
import chisel3.util.HasBlackBoxResource

/** The DPI-C DRAM channel model (`hardware/dpi/sv/SpAttenDram.sv`), one per channel.
  *
  * Every clock edge it calls the C++ model (the `.cc` files of `hardware/dpi/`), which checks each
  * request address (burst-aligned, below `2^dramAddrBits`, owned by this channel), times
  * it with the selected backend (built-in HBM2 model, Ramulator2 or ideal) and returns the
  * burst's bytes from the memory image in request order. Its outputs are registered.
  * Options are plusargs read by the C++ side; see `hardware/dpi/README.md`.
  *
  * @param p       accelerator parameters (channels, burst size, address width)
  * @param channel this instance's channel id, `0 until p.numChannels`
  */
class SpAttenDram(p: SpAttenParams, channel: Int)
    extends BlackBox(
      Map(
        "CHANNEL" -> IntParam(channel),
        "NUM_CHANNELS" -> IntParam(p.numChannels),
        "BURST_BYTES" -> IntParam(p.burstBytes),
        "ADDR_BITS" -> IntParam(p.dramAddrBits),
        "DATA_BITS" -> IntParam(p.burstBits)))
    with HasBlackBoxResource {
  require(channel >= 0 && channel < p.numChannels, s"channel $channel out of range 0 until ${p.numChannels}")

  val io = IO(new Bundle {
    val clock      = Input(Clock())
    val reset      = Input(Bool())
    val req_valid  = Input(Bool())
    val req_ready  = Output(Bool())
    val req_addr   = Input(UInt(p.dramAddrBits.W))
    val resp_valid = Output(Bool())
    val resp_ready = Input(Bool())
    val resp_data  = Output(UInt(p.burstBits.W))
  })
  addResource("/SpAttenDram.sv")
}

/** One simulated DRAM channel behind a [[DramReadPort]]: connects the accelerator's port
  * to a [[SpAttenDram]] BlackBox. The top instantiates one per channel.
  *
  * @param p       accelerator parameters
  * @param channel channel id, `0 until p.numChannels`
  */
class SimDramChannel(p: SpAttenParams, channel: Int) extends Module {
  /** The accelerator's side: requests in, responses out. */
  val io = IO(Flipped(new DramReadPort(p)))

  private val dram = Module(new SpAttenDram(p, channel))
  dram.io.clock      := clock
  dram.io.reset      := reset.asBool
  dram.io.req_valid  := io.req.valid
  io.req.ready       := dram.io.req_ready
  dram.io.req_addr   := io.req.bits
  io.resp.valid      := dram.io.resp_valid
  dram.io.resp_ready := io.resp.ready
  io.resp.bits       := dram.io.resp_data
}
