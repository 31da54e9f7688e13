# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Render the bundled sample frames: a small synthetic room seen by a moving camera.

The frames ship in ``tipsv2_ros/samples/`` under the project's licence (Apache-2.0): they
are made here, by ray casting a floor, three walls, a box and a ball with simple textures
and Lambert shading, so no third-party image rights are involved. Metric ground-truth depth
and the camera intrinsics are written next to them, so a user with the real weights can
compare the predicted depth with the truth.

Usage: python tools/make_samples.py [--out tipsv2_ros/samples] [--frames 6]
"""
import argparse
import json
import pathlib

import numpy as np
from PIL import Image

WIDTH, HEIGHT, FOCAL = 320, 240, 260.0
# Direction the light travels (y is down): from above, slightly left and behind the camera.
LIGHT = np.array([0.3, 1.0, 0.4]) / np.linalg.norm([0.3, 1.0, 0.4])


def _planes():
    """Room planes as (point, normal, colour function) in world coordinates (y down)."""
    def floor(p):  # checkerboard tiles
        check = (np.floor(p[..., 0] * 2) + np.floor(p[..., 2] * 2)) % 2
        return np.where(check[..., None] > 0, [0.72, 0.66, 0.58], [0.45, 0.40, 0.35])

    def wall(colour):
        return lambda p: np.broadcast_to(np.array(colour), p.shape).copy()

    def back_wall(p):  # a door and a picture give the wall some structure
        x, y = p[..., 0], p[..., 1]
        rgb = np.broadcast_to(np.array([0.80, 0.78, 0.70]), p.shape).copy()
        door = (x > 1.1) & (x < 2.0) & (y > -0.7)
        picture = (x > -1.2) & (x < 0.1) & (y > -1.0) & (y < -0.2)
        rgb[door] = [0.40, 0.26, 0.16]
        rgb[picture] = [0.25, 0.50, 0.35]
        return rgb

    return [
        (np.array([0, 1.2, 0]), np.array([0, -1.0, 0]), floor),               # floor
        (np.array([0, 0, 6.0]), np.array([0, 0, -1.0]), back_wall),                # back
        (np.array([-2.5, 0, 0]), np.array([1.0, 0, 0]), wall([0.55, 0.65, 0.75])),   # left
        (np.array([2.5, 0, 0]), np.array([-1.0, 0, 0]), wall([0.75, 0.60, 0.55])),   # right
        (np.array([0, -1.6, 0]), np.array([0, 1.0, 0]), wall([0.92, 0.92, 0.92])),   # ceiling
    ]


def _box_hit(origin, dirs, lo, hi):
    """Slab test: distance to an axis-aligned box (inf where missed) and its normals."""
    with np.errstate(divide='ignore', invalid='ignore'):
        t1 = (lo - origin) / dirs
        t2 = (hi - origin) / dirs
    tmin = np.nanmax(np.minimum(t1, t2), axis=-1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=-1)
    hit = (tmax >= tmin) & (tmin > 0)
    t = np.where(hit, tmin, np.inf)
    axis = np.argmax(np.minimum(t1, t2), axis=-1)
    normal = np.zeros(dirs.shape)
    np.put_along_axis(normal, axis[..., None], -np.sign(
        np.take_along_axis(dirs, axis[..., None], -1)), -1)
    return t, normal


def _sphere_hit(origin, dirs, centre, radius):
    oc = origin - centre
    b = (dirs * oc).sum(-1)
    disc = b * b - (oc * oc).sum() + radius * radius
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > 0), t, np.inf)
    normal = origin + dirs * np.where(np.isfinite(t), t, 0)[..., None] - centre
    return t, normal / radius


def render(cam_x, cam_yaw):
    """Return (rgb uint8 HxWx3, depth float32 HxW metres along the optical axis)."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = np.stack([(u + 0.5 - WIDTH / 2) / FOCAL, (v + 0.5 - HEIGHT / 2) / FOCAL,
                     np.ones_like(u)], -1)
    c, s = np.cos(cam_yaw), np.sin(cam_yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    dirs = rays @ rot.T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = np.array([cam_x, 0.0, 0.0])

    best = np.full((HEIGHT, WIDTH), np.inf)
    colour = np.zeros((HEIGHT, WIDTH, 3))
    normal = np.zeros((HEIGHT, WIDTH, 3))
    for point, n, colour_fn in _planes():
        denom = dirs @ n
        with np.errstate(divide='ignore', invalid='ignore'):
            t = ((point - origin) @ n) / denom
        t = np.where((t > 0) & np.isfinite(t), t, np.inf)
        closer = t < best
        best = np.where(closer, t, best)
        hit_points = origin + dirs * np.where(np.isfinite(t), t, 0)[..., None]
        colour = np.where(closer[..., None], colour_fn(hit_points), colour)
        normal = np.where(closer[..., None], n, normal)
    for t, n, rgb in [
        (*_box_hit(origin, dirs, np.array([-1.4, 0.4, 3.2]), np.array([-0.4, 1.2, 4.0])),
         [0.62, 0.42, 0.22]),
        (*_sphere_hit(origin, dirs, np.array([0.9, 0.8, 3.0]), 0.4), [0.2, 0.45, 0.85]),
    ]:
        closer = t < best
        best = np.where(closer, t, best)
        colour = np.where(closer[..., None], rgb, colour)
        normal = np.where(closer[..., None], n, normal)

    shade = 0.35 + 0.65 * np.clip(-(normal @ LIGHT), 0, 1)
    rgb = np.clip(colour * shade[..., None] * 255, 0, 255).astype(np.uint8)
    depth = (best * (dirs @ (rot @ np.array([0, 0, 1.0])))).astype(np.float32)
    return rgb, depth


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='tipsv2_ros/samples')
    parser.add_argument('--frames', type=int, default=6)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    depths = {}
    for i in range(args.frames):
        phase = i / max(args.frames - 1, 1)
        rgb, depth = render(cam_x=-0.5 + phase, cam_yaw=0.25 - 0.5 * phase)
        name = f'room_{i:02d}'
        Image.fromarray(rgb).save(out / f'{name}.png', optimize=True)
        depths[name] = depth
    np.savez_compressed(out / 'depth_truth.npz', **depths)
    intrinsics = {'width': WIDTH, 'height': HEIGHT, 'fx': FOCAL, 'fy': FOCAL,
                  'cx': WIDTH / 2 - 0.5, 'cy': HEIGHT / 2 - 0.5}
    (out / 'camera.json').write_text(json.dumps(intrinsics, indent=1) + '\n')
    print(f'wrote {args.frames} frames to {out}')


if __name__ == '__main__':
    main()
