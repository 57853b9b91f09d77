import { useMemo } from 'react';
import { applyTemplate, CLIP_WINDOW, countClipTokens, findBlockedTerms, mergeNegative, NEGATIVE_PRESETS, PROMPT_TEMPLATES } from '../../../shared/prompts';

const WINDOWS_TITLE = `Estimate. The text encoder reads ${CLIP_WINDOW} tokens at a time: each window of ${CLIP_WINDOW} tokens is encoded separately, so words split across windows lose context. Put BREAK where a new window should start.`;

/**
 * Under the prompt fields: templates, negative presets and the CLIP token estimate
 * (local backend only; the cloud API has neither), and the blocked-terms warning.
 */
export function PromptTools(props: {
  prompt: string;
  negativePrompt: string;
  backend: 'local' | 'cloud';
  blockedTerms: readonly string[];
  onPrompt(v: string): void;
  onNegative(v: string): void;
}) {
  const { prompt, negativePrompt, backend, blockedTerms, onPrompt, onNegative } = props;
  const local = backend === 'local';
  const count = useMemo(() => (local ? countClipTokens(prompt) : null), [local, prompt]);
  const blocked = useMemo(() => (blockedTerms.length ? findBlockedTerms(prompt, blockedTerms) : []), [prompt, blockedTerms]);

  return (
    <div className="prompt-tools">
      <div className="prompt-tools-row">
        <select
          name="promptTemplate"
          aria-label="Prompt template"
          title="Wraps the current prompt in a template"
          value=""
          onChange={(e) => {
            const t = PROMPT_TEMPLATES.find((x) => x.id === e.target.value);
            if (!t) return;
            const r = applyTemplate(t, prompt);
            onPrompt(r.prompt);
            if (local) onNegative(mergeNegative(negativePrompt, r.negativePrompt));
          }}
        >
          <option value="">Template…</option>
          {PROMPT_TEMPLATES.map((t) => (
            <option key={t.id} value={t.id} title={t.prompt}>
              {t.label}
            </option>
          ))}
        </select>
        {local && (
          <select
            name="negativePreset"
            aria-label="Negative preset"
            title="Adds the preset's terms missing from the negative prompt"
            value=""
            onChange={(e) => {
              const p = NEGATIVE_PRESETS.find((x) => x.id === e.target.value);
              if (p) onNegative(mergeNegative(negativePrompt, p.text));
            }}
          >
            <option value="">Negative preset…</option>
            {NEGATIVE_PRESETS.map((p) => (
              <option key={p.id} value={p.id} title={p.text}>
                {p.label}
              </option>
            ))}
          </select>
        )}
        {count && (
          <span
            className={`muted small token-count${count.windows > 1 ? ' warn' : ''}`}
            data-testid="token-count"
            title={count.windows > 1 ? `${WINDOWS_TITLE} Tokens per window: ${count.perWindow.join(' + ')}.` : WINDOWS_TITLE}
          >
            {count.windows > 1 ? `≈ ${count.tokens} tokens · ${count.windows} windows` : `≈ ${count.tokens} / ${CLIP_WINDOW} tokens`}
          </span>
        )}
      </div>
      {blocked.length > 0 && (
        <p role="alert" className="blocked-terms">
          Blocked on this machine: {blocked.join(', ')} — the request will be refused.
        </p>
      )}
    </div>
  );
}
