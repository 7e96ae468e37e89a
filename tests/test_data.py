"""sanmini.data: checked image folders, the small package datasets, the Imagenette download.

Nothing here touches the network: the download tests serve an archive the test builds, from a
``file://`` URL or an HTTP server on 127.0.0.1.
"""
import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torchvision.datasets import ImageFolder

from sanmini.data import (IMAGENET_MEAN, IMAGENET_STD, check_image_folder, check_images, digits, download_imagenette,
                          eval_transform, image_folder, noisy_crops, photo, photo_crops, read_image,
                          save_image_folder, train_transform)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def make_folder(root: Path, classes=("cat", "dog"), per_class=(3, 2), size=(40, 50), ext=".JPEG"):
    """root/train/CLASS/k.JPEG and root/val/CLASS/k.JPEG with random RGB pixels."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}{ext}", format="PNG" if ext == ".png" else "JPEG")
    return root


# --- folders --------------------------------------------------------------------------------

def test_check_image_folder_returns_sorted_classes(tmp_path):
    make_folder(tmp_path, classes=("n02", "n01", "n10"))
    assert check_image_folder(tmp_path) == ["n01", "n02", "n10"]


def _break(root: Path, how: str) -> tuple[Path, Path]:
    """A data folder with one thing wrong: (the folder to check, the path the error must name)."""
    if how == "missing data folder":
        return root / "nowhere", root / "nowhere"
    make_folder(root)
    if how == "missing val":
        (root / "val").rename(root / "validation")
        return root, root / "val"
    if how == "no class folders":
        for image in (root / "train").rglob("*.JPEG"):
            image.unlink()
        for folder in (root / "train").iterdir():
            folder.rmdir()
        return root, root / "train"
    if how == "class without images":
        (root / "val" / "dog" / "0.JPEG").rename(root / "val" / "dog" / "0.txt")
        (root / "val" / "dog" / "1.JPEG").unlink()
        return root, root / "val" / "dog"
    if how == "different classes":
        (root / "val" / "dog").rename(root / "val" / "wolf")
        return root, root / "val"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing data folder", "missing val", "no class folders",
                                 "class without images", "different classes"])
def test_bad_folder_errors_name_the_path(tmp_path, how):
    root, named = _break(tmp_path, how)
    with pytest.raises((FileNotFoundError, ValueError), match=f"{named}[ :]"):
        check_image_folder(root)


def test_unreadable_image_error_names_the_file(tmp_path):
    make_folder(tmp_path)
    bad = tmp_path / "train" / "cat" / "1.JPEG"
    bad.write_bytes(b"not an image at all")
    truncated = tmp_path / "train" / "dog" / "2.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:200])
    dataset = image_folder(tmp_path, "train", train_transform(32))
    for path in (bad, truncated):
        index = [Path(p) for p, _ in dataset.samples].index(path)
        with pytest.raises(ValueError, match=f"cannot read the image {path}"):
            dataset[index]


def test_check_images_finds_what_is_no_image_before_any_decoding(tmp_path):
    """Empty files, text under an image's name and a header cut short are found from the headers;
    a file cut inside its pixel data is not (it needs a decode) and is named when it is read."""
    make_folder(tmp_path, per_class=(4, 1))
    images = sorted((tmp_path / "train").rglob("*.JPEG"))
    assert check_images(images) == 8
    empty, text, cut_header, cut_pixels = images[1], images[2], images[5], images[6]
    empty.write_bytes(b"")
    text.write_text("<html>404 Not Found</html>")
    cut_header.write_bytes(cut_header.read_bytes()[:20])
    cut_pixels.write_bytes(cut_pixels.read_bytes()[:-400])
    with pytest.raises(ValueError) as caught:
        check_images(images, threads=3)
    message = str(caught.value)
    assert message.startswith("3 of 8 image files cannot be read as images: ")
    for path in (empty, text, cut_header):
        assert f"{path} (" in message
    assert str(cut_pixels) not in message
    dataset = image_folder(tmp_path, "train", train_transform(32))
    index = [Path(p) for p, _ in dataset.samples].index(cut_pixels)
    with pytest.raises(ValueError, match=f"cannot read the image {cut_pixels}"):
        dataset[index]


def test_transforms_against_pil(tmp_path):
    """Evaluation: short side to round(S * 256 / 224), centre crop S, ImageNet normalisation,
    checked against the same steps done with PIL and numpy (on a smooth image, 48 x 70)."""
    make_folder(tmp_path, classes=("a",), per_class=(1, 1))
    y, x = np.mgrid[0:48, 0:70]
    smooth = np.stack([x * 3, y * 5, x + y * 2], axis=2).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "val" / "a" / "0.JPEG", format="PNG")
    image, label = image_folder(tmp_path, "val", eval_transform(32))[0]
    assert image.shape == (3, 32, 32) and label == 0
    side = round(32 * 256 / 224)                                          # 37
    pil = Image.fromarray(smooth).resize((int(70 * side / 48), side), Image.BILINEAR)   # 53 x 37
    left, top = round((pil.width - 32) / 2), round((pil.height - 32) / 2)
    crop = np.asarray(pil)[top:top + 32, left:left + 32] / 255.0
    expected = (torch.from_numpy(crop).permute(2, 0, 1).float() - MEAN) / STD
    torch.testing.assert_close(image, expected, atol=1e-5, rtol=0)
    train_image, _ = image_folder(tmp_path, "train", train_transform(24))[0]
    assert train_image.shape == (3, 24, 24)
    # Training crops of the whole area, unflipped, of a square image: the image resized.
    square = Image.fromarray(smooth[:, :48])
    whole = train_transform(24, min_scale=1.0, flip=False)(square)
    expected = np.asarray(square.resize((24, 24), Image.BILINEAR)) / 255.0
    torch.testing.assert_close(whole, (torch.from_numpy(expected).permute(2, 0, 1).float() - MEAN) / STD,
                               atol=1e-5, rtol=0)


# --- small datasets -------------------------------------------------------------------------

def test_digits_split_values_and_upsampling():
    reference = load_digits()
    train8, val8 = digits("train", image_size=8, normalize=False), digits("val", image_size=8, normalize=False)
    assert len(train8) + len(val8) == len(reference.target) == 1797
    # Together the two splits are exactly scikit-learn's images (/16), each once, with its label.
    ours = sorted((x[0].numpy().tobytes(), int(y)) for ds in (train8, val8) for x, y in ds)
    theirs = sorted(((im / 16).astype(np.float32).tobytes(), int(t))
                    for im, t in zip(reference.images, reference.target))
    assert ours == theirs
    assert all(torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]) for x, _ in val8)
    # Stratified: 20% of each digit in val.
    per_class = Counter(int(y) for _, y in val8)
    assert all(abs(per_class[d] - 0.2 * np.sum(reference.target == d)) <= 1 for d in range(10))
    # 64 x 64: PIL's bilinear resize of the 8 x 8 image (half-pixel centres), then normalised.
    val64 = digits("val", image_size=64)
    for k in (0, 17, 359):
        small = Image.fromarray(val8[k][0][0].numpy(), mode="F").resize((64, 64), Image.BILINEAR)
        expected = (torch.from_numpy(np.array(small)).expand(3, 64, 64) - MEAN) / STD
        torch.testing.assert_close(val64[k][0], expected, atol=1e-5, rtol=1e-5)
        assert val64[k][1] == val8[k][1]
    assert val64.classes == [str(d) for d in range(10)]
    with pytest.raises(ValueError, match="split"):
        digits("test")


def test_photos_are_scikit_image_photos():
    camera = photo("camera")                                              # grey, repeated
    assert camera.shape == (3, 512, 512)
    torch.testing.assert_close(camera, torch.from_numpy(skimage.data.camera() / 255.0).float().expand(3, -1, -1))
    astronaut = photo("astronaut")
    torch.testing.assert_close(astronaut, torch.from_numpy(skimage.data.astronaut() / 255.0).float().permute(2, 0, 1))
    with pytest.raises(ValueError, match="unknown photo 'lena'"):
        photo("lena")


def test_photo_crops_are_windows_of_their_photo_and_splits_do_not_overlap():
    names = ("chelsea", "coins")
    train = photo_crops("train", names=names, crop_size=48, crops_per_photo=5, normalize=False)
    val = photo_crops("val", names=names, crop_size=48, crops_per_photo=5)
    assert len(train) == len(val) == 10 and train.classes == list(names)
    for dataset, normalised in ((train, False), (val, True)):
        for (crop, label), (k, top, left) in zip(dataset, dataset.positions):
            image = photo(names[k])
            window = image[:, top:top + 48, left:left + 48]
            assert label == k
            torch.testing.assert_close(crop, (window - MEAN) / STD if normalised else window)
            boundary = image.shape[2] - image.shape[2] // 4
            assert (left + 48 <= boundary) if dataset is train else (left >= boundary)
    with pytest.raises(ValueError, match="'page'.*crop_size 200"):
        photo_crops("val", names=("page",), crop_size=200)


def test_noisy_crops():
    pairs = noisy_crops("train", names=("astronaut",), crop_size=32, crops_per_photo=40, sigma=0.2)
    noisy = torch.stack([n for n, _ in pairs])
    clean = torch.stack([c for _, c in pairs])
    assert abs((noisy - clean).std().item() - 0.2) < 0.01
    assert abs((noisy - clean).mean().item()) < 0.01
    k, top, left = pairs.positions[3]
    torch.testing.assert_close(clean[3], photo("astronaut")[:, top:top + 32, left:left + 32])


def test_save_image_folder_round_trip(tmp_path):
    dataset = torch.utils.data.Subset(digits("val", image_size=16, normalize=False), range(30))
    save_image_folder(dataset, tmp_path, "val", classes=[str(d) for d in range(10)])
    read = ImageFolder(str(tmp_path / "val"))
    assert len(read) == 30
    labels = [int(y) for _, y in dataset]
    assert sorted(Counter(read.classes[y] for _, y in read.samples).items()) == \
        sorted(Counter(str(y) for y in labels).items())
    first_path = tmp_path / "val" / str(labels[0]) / "00000.png"
    pixels = np.asarray(Image.open(first_path).convert("RGB")).transpose(2, 0, 1) / 255.0
    assert np.abs(pixels - dataset[0][0].numpy()).max() <= 0.5 / 255 + 1e-6


# --- Imagenette download --------------------------------------------------------------------

def make_archive(path: Path, top="imagenette2-160", extra=None) -> str:
    """A .tgz in Imagenette's layout with 2 classes; returns its MD5."""
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as tar:
        members = [f"{top}/{split}/{wnid}/{k}.JPEG" for split in ("train", "val")
                   for wnid in ("n01440764", "n02102040") for k in range(2)] + (extra or [])
        for name in members:
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buffer, "JPEG")
            info = tarfile.TarInfo(name)
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_imagenette_from_a_local_server(tmp_path, local_server):
    served, base = local_server
    md5 = make_archive(served / "imagenette2-160.tgz")
    root = tmp_path / "data"
    folder = download_imagenette(root, url=f"{base}/imagenette2-160.tgz", md5=md5, progress=False)
    assert folder == root / "imagenette2-160"
    assert check_image_folder(folder) == ["n01440764", "n02102040"]
    assert (root / "imagenette2-160.tgz").read_bytes() == (served / "imagenette2-160.tgz").read_bytes()
    assert not list(root.glob("*.part")) and not list(root.glob(".*"))
    # Already there: nothing is fetched (this URL would fail).
    again = download_imagenette(root, url=f"{base}/missing/imagenette2-160.tgz", md5=md5, progress=False)
    assert again == folder


def test_download_checks_the_checksum(tmp_path):
    archive = tmp_path / "src" / "imagenette2-160.tgz"
    archive.parent.mkdir()
    md5 = make_archive(archive)
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "data"
    wrong = "0" * 32
    with pytest.raises(ValueError, match=f"md5 checksum mismatch for {archive.as_uri()}: got {md5}, expected {wrong}"):
        download_imagenette(root, url=archive.as_uri(), md5=wrong, progress=False)
    assert list(root.iterdir()) == []                                    # nothing half-done left
    folder = download_imagenette(root, url=archive.as_uri(), sha256=sha256, progress=False)
    assert check_image_folder(folder) == ["n01440764", "n02102040"]
    with pytest.raises(ValueError, match="md5 or sha256"):
        download_imagenette(tmp_path / "other", url=archive.as_uri(), progress=False)


def test_download_refuses_archive_members_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.tgz"
    md5 = make_archive(archive, top="evil", extra=["evil/../../outside.JPEG"])
    with pytest.raises(tarfile.OutsideDestinationError):
        download_imagenette(tmp_path / "data", url=archive.as_uri(), md5=md5, progress=False)
    assert not (tmp_path / "outside.JPEG").exists()


def test_command_line_writes_the_photo_crops_as_a_folder(tmp_path):
    from sanmini.data.__main__ import main

    folder = main(["photos", str(tmp_path / "photos"), "--image-size", "32", "--crops-per-photo", "2"])
    classes = check_image_folder(folder)
    assert classes == sorted(photo_crops("train", crops_per_photo=1).classes)
    for split in ("train", "val"):
        crops = photo_crops(split, crop_size=32, crops_per_photo=2, normalize=False)
        read = image_folder(folder, split)
        assert len(read) == len(crops) == 12
        (index,) = [i for i, (path, _) in enumerate(read.samples) if path.endswith("chelsea/00001.png")]
        pixels = torch.from_numpy(np.array(read[index][0])).permute(2, 0, 1) / 255.0
        assert (pixels - crops[crops.classes.index("chelsea") * 2 + 1][0]).abs().max() <= 0.5 / 255 + 1e-6


def test_a_download_without_a_server_says_where_to_put_the_file(tmp_path):
    from sanmini.data.imagenette import download
    target = tmp_path / "imagenette2-160.tgz"
    with pytest.raises(ConnectionError, match=rf"cannot download http://127.0.0.1:9/x.tgz: .*put it at {target}"):
        download("http://127.0.0.1:9/x.tgz", target, progress=False)       # port 9: nothing listens
    assert not list(tmp_path.iterdir())                                     # no partial file left


def test_the_data_command_prints_one_line_for_a_user_error(tmp_path, capsys):
    from sanmini.data.__main__ import cli
    blocked = tmp_path / "a file"
    blocked.write_text("not a folder")
    assert cli(["digits", str(blocked / "digits")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sanmini.data: error: ") and str(blocked) in lines[0]
    with pytest.raises(OSError):
        cli(["digits", str(blocked / "digits"), "--debug"])


# --- every mode PIL opens, read as 8-bit RGB (issue 31: 16-bit images were clipped at 255) --------

def _pixels(shape, high, dtype, seed=0):
    return np.random.default_rng(seed).integers(0, high + 1, shape).astype(dtype)


def _case(mode):
    """(image to save, file suffix, the (H, W, 3) uint8 pixels read_image must give), computed from
    the pixels in numpy, not by PIL's conversions."""
    size = (6, 7)
    if mode == "1":
        bits = _pixels(size, 1, bool)
        return Image.fromarray(bits), ".png", np.repeat(bits[..., None] * np.uint8(255), 3, axis=2)
    if mode in ("L", "LA", "RGB", "RGBA"):
        channels = len(mode)
        pixels = _pixels((*size, channels), 255, np.uint8)
        image = Image.merge(mode, [Image.fromarray(pixels[..., c]) for c in range(channels)])
        grey = np.repeat(pixels[..., :1], 3, axis=2)
        return image, ".png", grey if mode in ("L", "LA") else pixels[..., :3]
    if mode == "P":
        index, palette = _pixels(size, 15, np.uint8), _pixels((256, 3), 255, np.uint8, seed=1)
        image = Image.frombytes("P", size[::-1], index.tobytes())
        image.putpalette(palette.ravel().tolist())
        return image, ".png", palette[index]
    if mode == "CMYK":
        cmyk = _pixels((*size, 4), 255, np.uint8)
        image = Image.frombytes("CMYK", size[::-1], cmyk.tobytes())
        k = 255 - cmyk[..., 3:].astype(np.float64)
        return image, ".tif", np.rint((255 - cmyk[..., :3]) * k / 255).astype(np.uint8)
    if mode in ("I;16", "I"):
        values = _pixels(size, 65535, np.uint16)
        values.flat[:2] = (0, 65535)                                  # both ends of the range
        image = Image.fromarray(values) if mode == "I;16" else Image.fromarray(values.astype(np.int32))
        grey = np.rint(values / 257).astype(np.uint8)
        return image, ".png" if mode == "I;16" else ".tif", np.repeat(grey[..., None], 3, axis=2)
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I"])
def test_read_image_reads_every_mode_as_8_bit_rgb(tmp_path, mode):
    image, suffix, expected = _case(mode)
    path = tmp_path / f"image{suffix}"
    image.save(path)
    # The file really has that mode (older Pillow, 9.2 among them, opens a 16-bit greyscale PNG as
    # mode I, 32-bit integers: the same pixels, read by the same rule).
    assert Image.open(path).mode in ((mode, "I") if mode == "I;16" else (mode,))
    got = read_image(str(path))
    assert got.mode == "RGB"
    np.testing.assert_allclose(np.asarray(got, dtype=np.int64), expected, rtol=0, atol=1 if mode == "CMYK" else 0)


def test_sixteen_bit_pixels_are_scaled_not_clipped(tmp_path):
    # A random 16-bit image: PIL's convert("RGB") clips all but 1/256 of its pixels to 255.
    values = _pixels((64, 64), 65535, np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    got = np.asarray(read_image(str(tmp_path / "deep.png")))[..., 0]
    assert (got == 255).mean() < 0.01
    np.testing.assert_array_equal(got, np.rint(values / 257))


def test_images_of_unknown_range_are_refused_naming_the_file(tmp_path):
    floats = tmp_path / "float.tif"
    Image.fromarray(np.random.default_rng(0).random((5, 5)).astype(np.float32)).save(floats)
    assert Image.open(floats).mode == "F"
    with pytest.raises(ValueError, match=f"cannot read the image {floats}: its pixels are floating-point "
                                         f"numbers \\(mode F\\)"):
        read_image(str(floats))
    with pytest.raises(ValueError, match=f"1 of 1 image files cannot be read as images: {floats} "
                                         f"\\(floating-point pixels \\(mode F\\)"):
        check_images([floats])                                        # found from the header
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(wide)
    with pytest.raises(ValueError, match=f"cannot read the image {wide}: its mode I pixels run from 0 to 70000, "
                                         f"outside the 16-bit range"):
        read_image(str(wide))
