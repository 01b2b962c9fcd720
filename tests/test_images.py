import os

import numpy as np
import pytest
import torch
from conftest import photo, write_metadata
from PIL import Image

from visreward.core.errors import VisrewardError
from visreward.io import images as images_module
from visreward.io.images import ImageLoadError, SkipLog, as_records, load_image, tensor_to_pil
from visreward.io.readers import find_images, read_images


def test_folder_recursive_with_metadata_prompts_and_stable_ids(tmp_path, monkeypatch):
    root = tmp_path / "gen"
    (root / "sub").mkdir(parents=True)
    photo("coffee").save(root / "a.jpg")
    photo("chelsea").save(root / "sub" / "b.png")
    photo("astronaut").save(root / "c.webp")
    write_metadata(root, [{"file_name": "a.jpg", "prompt": "coffee"},
                          {"file_name": "sub/b.png", "text": "a cat", "score": 3},
                          {"file_name": "c.webp", "caption": "an astronaut"}])
    records = find_images([root])
    assert [r.id for r in records] == ["gen/a.jpg", "gen/c.webp", "gen/sub/b.png"]
    assert [r.prompt for r in records] == ["coffee", "an astronaut", "a cat"]
    assert records[2].metadata == {"score": 3}
    monkeypatch.chdir(root)  # the same folder named from elsewhere gives the same ids
    assert [r.id for r in find_images(["."])] == ["gen/a.jpg", "gen/c.webp", "gen/sub/b.png"]  # "." is named "gen"
    monkeypatch.chdir(tmp_path)
    assert [r.id for r in find_images(["gen"])] == [r.id for r in records]


def test_ids_do_not_collide_across_folders(tmp_path):
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        photo("coffee").save(tmp_path / name / "0.png")
    ids = [r.id for r in find_images([tmp_path / "x", tmp_path / "y"])]
    assert ids == ["x/0.png", "y/0.png"]


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no images or videos found"),
    (lambda p: (p / "notes.txt").write_text("hi"), "no images or videos found"),
])
def test_empty_folder_is_a_one_line_error(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(VisrewardError, match=message) as error:
        find_images([tmp_path])
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(VisrewardError, match="no such file or folder"):
        find_images([tmp_path / "nope"])


def _bad_files(folder):
    photo("coffee").save(folder / "good.jpg")
    (folder / "empty.png").write_bytes(b"")
    data = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "text.jpg").write_text("this is not a jpeg")
    (folder / "notes.txt").write_text("not an image")


def test_corrupt_files_are_skipped_and_reported(tmp_path, encoder):
    from visreward.encoders.features import extract_features

    _bad_files(tmp_path)
    skipped = SkipLog()
    kept, features = extract_features(read_images([tmp_path], skipped), encoder, skipped=skipped)
    assert [r.id.split("/")[-1] for r in kept] == ["good.jpg"] and features.shape == (1, 1280)
    reasons = {os.path.basename(src): reason for src, reason in skipped.entries}
    assert set(reasons) == {"empty.png", "truncated.jpg", "text.jpg", "notes.txt"}
    assert reasons["empty.png"] == "empty file"
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["text.jpg"] == "not a readable image"
    summary = skipped.summary(tmp_path / "skipped.txt")
    assert summary.startswith("skipped 4 unreadable file(s)") and "and 1 more" in summary
    skipped.write(tmp_path / "log" / "skipped.txt")
    assert len((tmp_path / "log" / "skipped.txt").read_text().splitlines()) == 4


def test_strict_fails_on_first_bad_file_naming_it(tmp_path, encoder):
    from visreward.encoders.features import extract_features

    _bad_files(tmp_path)
    with pytest.raises(ImageLoadError, match=r"notes\.txt: not an image or video file") as error:
        find_images([tmp_path], SkipLog(strict=True))
    assert "\n" not in str(error.value)
    (tmp_path / "notes.txt").unlink()
    strict = SkipLog(strict=True)
    with pytest.raises(ImageLoadError, match=r"empty\.png: empty file"):
        extract_features(read_images([tmp_path], strict), encoder, skipped=strict)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    photo("coffee").save(tmp_path / "big.png")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(tmp_path / "big.png")


def test_modes_become_rgb(tmp_path):
    gray = Image.fromarray(np.full((4, 4), 100, np.uint8), "L")
    assert load_image(gray).getpixel((0, 0)) == (100, 100, 100)
    transparent = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(transparent).getpixel((0, 0)) == (255, 255, 255)  # alpha composited over white
    half = Image.new("LA", (4, 4), (0, 128))
    assert load_image(half).getpixel((0, 0))[0] in (127, 128)
    palette = Image.new("P", (4, 4), 3)
    palette.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 756)
    assert load_image(palette).getpixel((0, 0)) == (70, 80, 90)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert load_image(cmyk).getpixel((0, 0)) == (255, 0, 0)
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    sixteen.save(tmp_path / "16bit.png")
    assert Image.open(tmp_path / "16bit.png").mode.startswith("I")
    assert load_image(tmp_path / "16bit.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(Image.fromarray(np.full((4, 4), 0.5, np.float32), "F")).getpixel((0, 0)) in ((127,) * 3, (128,) * 3)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (20, 40)


def test_jpeg_draft_decodes_large_files_smaller_but_never_below_target(tmp_path):
    photo("astronaut").resize((2048, 2048)).save(tmp_path / "big.jpg")
    assert min(load_image(tmp_path / "big.jpg", draft_size=256).size) >= 256
    assert load_image(tmp_path / "big.jpg", draft_size=256).size[0] < 2048


def test_api_inputs_tensors_and_prompt_count(tmp_path):
    batch = torch.rand(2, 3, 8, 8)
    records = as_records(batch, ["a", "b"])
    assert [r.id for r, _ in records] == ["0", "1"] and records[1][0].prompt == "b"
    with pytest.raises(VisrewardError, match="2 images but 1 prompts"):
        as_records(batch, ["a"])
    pil = tensor_to_pil(batch[0])
    assert pil.size == (8, 8) and pil.mode == "RGB"
    with pytest.raises(VisrewardError, match=r"\[3,H,W\] or \[B,3,H,W\]"):
        tensor_to_pil(torch.rand(4, 8, 8))
