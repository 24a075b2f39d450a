"""Data, from raw dataset files to the numpy batches both frameworks train and decode on (identical bytes in both)."""
