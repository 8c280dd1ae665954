"""QFM-IQM itself: partner mining (``pairs``), quality heads (``heads``), the channel gate (``gate``), the
quality model with the semantic noise (``model``), the student's memory bank (``memory``), partial fine-tune
on cached activations (``partial``), the losses and training loop (``train``), whole-backbone fine-tune
(``finetune``) and the behavioural check of the semantic noise (``diagnostics``)."""
