"""What differs between classification tasks: outputs, loss, decision rule, metrics, columns."""
