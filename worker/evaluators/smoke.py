"""The "smoke" evaluator: proves that a node can fetch a job's files intact and hold its
devices, without running any code from the model."""

from worker.evaluation import EvaluationContext, EvaluationError, Stopped, file_sha256


def evaluate(context: EvaluationContext) -> dict[str, float]:
    files = [*context.model_files, *context.dataset_files]
    total = 0
    for fetched in files:
        context.check_stop()
        digest = file_sha256(fetched.path)
        if digest != fetched.sha256:
            raise EvaluationError(
                f"{fetched.filename}: sha256 {digest} on disk, {fetched.sha256} expected."
            )
        size = fetched.path.stat().st_size
        total += size
        context.log(f"{fetched.filename}: {size} bytes, sha256 verified")
    hold = float(context.config.get("hold_seconds", 0))
    if hold > 0:
        context.log(f"holding {', '.join(context.devices) or 'no devices'} for {hold:g} s")
        if context.stop.wait(hold):
            raise Stopped()
    return {"files": len(files), "bytes": total}
