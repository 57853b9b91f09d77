/** The canvas document model, driven headlessly: pointer and key sequences in, document state out. */
import { describe, expect, it } from 'vitest';
import { CanvasEditor } from '../../src/renderer/features/canvas/document/editor';
import { snapFrame } from '../../src/renderer/features/canvas/document/geometry';

function drag(ed: CanvasEditor, points: [number, number][], opts = {}) {
  ed.pointerDown({ x: points[0][0], y: points[0][1] }, opts);
  for (const [x, y] of points.slice(1)) ed.pointerMove({ x, y });
  ed.pointerUp();
}

describe('canvas editor', () => {
  it('a brush drag becomes one mask stroke, held in the buffer until pointer-up', () => {
    const ed = new CanvasEditor();
    ed.setBrush({ size: 20, hardness: 0.5, opacity: 0.7 });
    ed.pointerDown({ x: 10, y: 10 });
    ed.pointerMove({ x: 20, y: 10 });
    expect(ed.buffer?.points).toEqual([10, 10, 20, 10]);
    expect(ed.doc.mask.strokes).toHaveLength(0);
    ed.pointerMove({ x: 30, y: 15 });
    ed.pointerUp();
    expect(ed.buffer).toBeNull();
    expect(ed.doc.mask.strokes).toEqual([expect.objectContaining({ op: 'paint', shape: 'line', points: [10, 10, 20, 10, 30, 15], size: 20, hardness: 0.5, opacity: 0.7 })]);
  });

  it('maps screen to document coordinates through pan and zoom', () => {
    const ed = new CanvasEditor();
    ed.zoomAt({ x: 0, y: 0 }, 2);
    ed.keyDown('v');
    drag(ed, [
      [0, 0],
      [100, 50],
    ]);
    expect(ed.view).toEqual({ x: 100, y: 50, scale: 2 });
    ed.keyDown('b');
    drag(ed, [
      [100, 50],
      [120, 70],
    ]);
    expect(ed.doc.mask.strokes[0].points).toEqual([0, 0, 10, 10]);
  });

  it('zoom keeps the point under the cursor fixed and stays within limits', () => {
    const ed = new CanvasEditor();
    const before = ed.toDoc({ x: 300, y: 200 });
    ed.zoomAt({ x: 300, y: 200 }, 1.5);
    const after = ed.toDoc({ x: 300, y: 200 });
    expect(after.x).toBeCloseTo(before.x);
    expect(after.y).toBeCloseTo(before.y);
    for (let i = 0; i < 100; i++) ed.zoomAt({ x: 0, y: 0 }, 2);
    expect(ed.view.scale).toBe(32);
  });

  it('space-drag pans with any tool, and does not paint', () => {
    const ed = new CanvasEditor();
    ed.keyDown(' ');
    drag(ed, [
      [0, 0],
      [30, 40],
    ]);
    ed.keyUp(' ');
    expect(ed.view).toMatchObject({ x: 30, y: 40 });
    expect(ed.doc.mask.strokes).toHaveLength(0);
  });

  it('every edit is undoable and redoable; a new edit clears redo', () => {
    const ed = new CanvasEditor();
    drag(ed, [
      [0, 0],
      [10, 10],
    ]);
    ed.keyDown('e');
    drag(ed, [
      [5, 5],
      [6, 6],
    ]);
    ed.invertMask();
    expect(ed.doc.mask.strokes.map((s) => s.op)).toEqual(['paint', 'erase']);
    expect(ed.doc.mask.inverted).toBe(true);
    ed.keyDown('z', { ctrl: true });
    expect(ed.doc.mask.inverted).toBe(false);
    ed.keyDown('z', { meta: true });
    expect(ed.doc.mask.strokes).toHaveLength(1);
    ed.keyDown('z', { ctrl: true, shift: true });
    expect(ed.doc.mask.strokes).toHaveLength(2);
    ed.clearMask();
    expect(ed.doc.mask.strokes).toHaveLength(0);
    expect(ed.canRedo).toBe(false);
    ed.undo();
    expect(ed.doc.mask.strokes).toHaveLength(2);
  });

  it('rectangle and lasso selections add filled polygons; empty ones add nothing', () => {
    const ed = new CanvasEditor();
    ed.keyDown('m');
    drag(ed, [
      [40, 30],
      [10, 10],
    ]);
    expect(ed.doc.mask.strokes[0]).toMatchObject({ shape: 'polygon', points: [10, 10, 40, 10, 40, 30, 10, 30] });
    drag(ed, [
      [5, 5],
      [5, 5],
    ]);
    expect(ed.doc.mask.strokes).toHaveLength(1);
    ed.keyDown('l');
    drag(ed, [
      [0, 0],
      [50, 0],
      [50, 50],
    ]);
    expect(ed.doc.mask.strokes[1]).toMatchObject({ shape: 'polygon', points: [0, 0, 50, 0, 50, 50] });
    drag(
      ed,
      [
        [0, 0],
        [10, 0],
        [10, 10],
      ],
      { alt: true },
    );
    expect(ed.doc.mask.strokes[2].op).toBe('erase');
  });

  it('the frame moves and resizes in one undoable edit, snapped to multiples of 8', () => {
    const ed = new CanvasEditor();
    ed.keyDown('f');
    drag(ed, [
      [100, 100],
      [150, 130],
      [163, 141],
    ]);
    expect(ed.doc.frame).toEqual({ x: 63, y: 41, width: 512, height: 512 });
    drag(ed, [
      [63 + 512, 41 + 512],
      [63 + 512 + 100, 41 + 512 - 3],
    ]);
    expect(ed.doc.frame).toEqual({ x: 63, y: 41, width: 616, height: 512 });
    ed.undo();
    expect(ed.doc.frame).toEqual({ x: 63, y: 41, width: 512, height: 512 });
    ed.undo();
    expect(ed.doc.frame).toEqual({ x: 0, y: 0, width: 512, height: 512 });
    // Dragging the west edge keeps the east edge where it was.
    drag(ed, [
      [0, 200],
      [-37, 200],
    ]);
    expect(ed.doc.frame.x + ed.doc.frame.width).toBe(512);
    expect(ed.doc.frame.width % 8).toBe(0);
  });

  it('snaps and clamps absurd frame sizes', () => {
    expect(snapFrame({ x: 0.4, y: 0, width: 1, height: 100000 })).toEqual({ x: 0, y: 0, width: 64, height: 4096 });
    expect(snapFrame({ x: 0, y: 0, width: 515, height: 1021 })).toMatchObject({ width: 512, height: 1024 });
  });

  it('brush size follows [ and ], and X swaps brush and eraser', () => {
    const ed = new CanvasEditor();
    ed.setBrush({ size: 100 });
    ed.keyDown(']');
    expect(ed.brush.size).toBe(120);
    ed.keyDown('[');
    ed.keyDown('[');
    expect(ed.brush.size).toBe(83);
    ed.keyDown('x');
    expect(ed.tool).toBe('eraser');
    ed.keyDown('x');
    expect(ed.tool).toBe('brush');
    ed.setBrush({ size: -5, hardness: 7, opacity: Number.NaN });
    expect(ed.brush).toEqual({ size: 1, hardness: 1, opacity: 1 });
  });

  it('the pen draws on the control layer and enables it', () => {
    const ed = new CanvasEditor();
    ed.keyDown('p');
    drag(ed, [
      [0, 0],
      [10, 0],
    ]);
    expect(ed.doc.control.strokes).toHaveLength(1);
    expect(ed.doc.control.enabled).toBe(true);
    expect(ed.doc.mask.strokes).toHaveLength(0);
    ed.clearControl();
    expect(ed.doc.control).toMatchObject({ strokes: [], enabled: false });
  });

  it('a restored mask image is part of the mask: clear removes it, undo brings it back', () => {
    const ed = new CanvasEditor();
    ed.commit((d) => ({ ...d, mask: { ...d.mask, image: { src: 'assets/m.png', rect: { x: 0, y: 0, width: 64, height: 64 } } } }));
    ed.clearMask();
    expect(ed.doc.mask.image).toBeNull();
    ed.undo();
    expect(ed.doc.mask.image).toEqual({ src: 'assets/m.png', rect: { x: 0, y: 0, width: 64, height: 64 } });
  });

  it('fit frames the content; 100% centres the frame at scale 1', () => {
    const ed = new CanvasEditor();
    ed.addImage({ name: 'a', src: 'images/a.png', x: -512, y: 0, width: 512, height: 512 });
    ed.fit({ width: 1104, height: 592 }, undefined, 40);
    expect(ed.view.scale).toBeCloseTo(1);
    expect(ed.toDoc({ x: 40, y: 40 })).toEqual({ x: -512, y: 0 });
    ed.actualSize({ width: 1000, height: 800 });
    expect(ed.view).toEqual({ scale: 1, x: 244, y: 144 });
  });
});
