"""The student's memory bank: when a student reads the pool."""

from __future__ import annotations


def test_a_student_reads_the_pool_to_distil_or_as_its_memory() -> None:
    from qfm_iqm.method.memory import pool_in_memory, uses_pool

    def student(kd: float, memory: str, adv: float) -> dict:
        return {"distillation": {"kd_weight": kd}, "matching": {"memory": memory, "adv_weight": adv, "sens_weight": 0.0}}

    assert uses_pool(student(1.0, "train", 0.0)) and not pool_in_memory(student(1.0, "train", 0.0))
    assert uses_pool(student(0.0, "train_pool", 1.0)) and pool_in_memory(student(0.0, "train_pool", 1.0))
    assert not uses_pool(student(0.0, "train_pool", 0.0))  # matching off: no memory bank
    assert not uses_pool(student(0.0, "train", 1.0))
