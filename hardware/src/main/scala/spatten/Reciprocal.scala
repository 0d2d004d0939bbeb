package spatten

import chisel3._
import chisel3.util._

/** Sequential restoring divider for the softmax reciprocal `R = floor(2^shift / x)`
  * (SPEC.md section 2: `R = floor(2^48 / E)`).
  *
  * The dividend `2^shift` is consumed from its most significant bit, `bitsPerCycle`
  * quotient bits a cycle: shift the partial remainder left, bring in the next dividend
  * bit, subtract `x` when it fits (quotient bit 1). `ceil((shift + 1) / bitsPerCycle)`
  * cycles per division, then the quotient waits in `out` until taken. `in` is accepted
  * only when idle. Division by zero yields all ones.
  *
  * @param divisorBits  width of `x`
  * @param shift        the dividend's exponent
  * @param bitsPerCycle quotient bits per cycle (>= 1)
  */
class Reciprocal(divisorBits: Int, shift: Int, bitsPerCycle: Int) extends Module {
  require(bitsPerCycle >= 1 && divisorBits >= 1 && shift >= 0)
  val quotientBits: Int = shift + 1

  val io = IO(new Bundle {
    val in  = Flipped(Decoupled(UInt(divisorBits.W)))
    val out = Decoupled(UInt(quotientBits.W))
  })

  private val cycles = (quotientBits + bitsPerCycle - 1) / bitsPerCycle
  private val steps  = cycles * bitsPerCycle // the dividend, zero-extended to `steps` bits

  val busy     = RegInit(false.B)
  val done     = RegInit(false.B)
  val divisor  = Reg(UInt(divisorBits.W))
  val rem      = Reg(UInt((divisorBits + 1).W))
  val quotient = Reg(UInt(steps.W))
  val pos      = Reg(UInt(log2Ceil(steps + 1).W)) // dividend bits not yet consumed

  io.in.ready := !busy && !done
  io.out.valid := done
  io.out.bits := quotient(quotientBits - 1, 0)

  when(io.in.fire) {
    divisor := io.in.bits
    rem := 0.U
    quotient := 0.U
    pos := steps.U
    busy := true.B
  }

  when(busy) {
    var r = rem
    var qBits = Seq.empty[Bool]
    for (k <- 0 until bitsPerCycle) {
      val bitIdx = pos - (k + 1).U // the dividend bit brought in by this step
      val shifted = Cat(r(divisorBits - 1, 0), bitIdx === shift.U)
      val fits = shifted >= divisor
      r = Mux(fits, shifted - divisor, shifted)
      qBits = qBits :+ fits
    }
    rem := r
    quotient := (if (steps > bitsPerCycle) Cat(quotient(steps - bitsPerCycle - 1, 0), Cat(qBits)) else Cat(qBits))
    pos := pos - bitsPerCycle.U
    when(pos === bitsPerCycle.U) {
      busy := false.B
      done := true.B
    }
  }
  when(io.out.fire) { done := false.B }
}
