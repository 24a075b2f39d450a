"""Where tests find the reference material: `../shared` beside the repository (as in CI)."""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("LORA_NLG_SHARED", ROOT.parent / "shared"))
MIRROR = pathlib.Path(os.environ.get("LORA_NLG_MIRROR", SHARED / "nlg_data"))
SCORER_FIXTURES = SHARED / "scorer_fixtures"
