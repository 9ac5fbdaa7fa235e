//! Chat templates: turning a list of chat messages into the prompt text an instruct model was trained on.
//!
//! GGUF files carry the template as Jinja source (`tokenizer.chat_template`). Rather than embed a Jinja
//! engine, the runtime recognises the one family its models use — ChatML (`<|im_start|>role\n…<|im_end|>\n`,
//! used by Qwen2.5 and SmolLM2) — and reads the template's built-in default system prompt out of the source,
//! so the rendered text matches what the Jinja template produces for plain text conversations (no tools).

/// One chat message: a role (`system`, `user`, `assistant`) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Why a conversation cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// A message has a role the template does not know.
    #[error("unsupported message role `{0}` (expected system, user or assistant)")]
    BadRole(String),
    /// The conversation is empty.
    #[error("messages must not be empty")]
    Empty,
}

/// A recognised chat template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML. `default_system` is inserted as the first turn when the conversation has no system
    /// message (Qwen2.5: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.").
    ChatMl {
        /// The template's default system prompt, if it has one.
        default_system: Option<String>,
    },
}

const IM_START_SYSTEM: &str = "<|im_start|>system\n";

impl ChatTemplate {
    /// Picks the template for a GGUF file's `tokenizer.chat_template` source. Files without a template,
    /// or with an unrecognised one, get ChatML without a default system prompt.
    pub fn from_gguf_template(source: Option<&str>) -> Self {
        ChatTemplate::ChatMl {
            default_system: source.and_then(default_system_prompt),
        }
    }

    /// Renders messages; with `add_generation_prompt` the text ends with the opening of the assistant turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        if messages.is_empty() {
            return Err(ChatError::Empty);
        }
        let ChatTemplate::ChatMl { default_system } = self;
        let mut out = String::new();
        if messages[0].role != "system" {
            if let Some(sys) = default_system {
                out.push_str(IM_START_SYSTEM);
                out.push_str(sys);
                out.push_str("<|im_end|>\n");
            }
        }
        for m in messages {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(ChatError::BadRole(m.role.clone()));
            }
            out.push_str("<|im_start|>");
            out.push_str(&m.role);
            out.push('\n');
            out.push_str(&m.content);
            out.push_str("<|im_end|>\n");
        }
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        Ok(out)
    }
}

/// Finds a literal default system turn in Jinja source: the text after `<|im_start|>system\n` up to
/// `<|im_end|>`, where that text is a literal (the template's `'<|im_start|>system\n' + messages[0]…`
/// form is followed by a quote and is skipped).
fn default_system_prompt(source: &str) -> Option<String> {
    // Jinja sources in GGUF files store the newline either raw or as the two characters `\n`.
    for opener in ["<|im_start|>system\\n", "<|im_start|>system\n"] {
        let mut rest = source;
        while let Some(i) = rest.find(opener) {
            rest = &rest[i + opener.len()..];
            if rest.starts_with('\'') || rest.starts_with('"') {
                continue;
            }
            if let Some(end) = rest.find("<|im_end|>") {
                let text = &rest[..end];
                if !text.contains(['\'', '"', '{', '}']) && !text.is_empty() {
                    return Some(text.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system-prompt part of Qwen2.5-Instruct's template source (tools branch omitted).
    const QWEN_TEMPLATE: &str = "{%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}";

    #[test]
    fn qwen_default_system_prompt_is_read_from_the_template() {
        let t = ChatTemplate::from_gguf_template(Some(QWEN_TEMPLATE));
        let out = t
            .render(&[ChatMessage::user("Write hello world in C.")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nWrite hello world in C.<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn explicit_system_message_replaces_the_default() {
        let t = ChatTemplate::from_gguf_template(Some(QWEN_TEMPLATE));
        let msgs = [
            ChatMessage::system("Be terse."),
            ChatMessage::user("2+2?"),
            ChatMessage::assistant("4"),
        ];
        let out = t.render(&msgs, false).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
        );
    }

    #[test]
    fn no_template_means_no_default_system() {
        let t = ChatTemplate::from_gguf_template(None);
        assert_eq!(
            t.render(&[ChatMessage::user("hi")], true).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn smollm_style_template_with_raw_newlines() {
        let src = "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}";
        let t = ChatTemplate::from_gguf_template(Some(src));
        assert_eq!(
            t,
            ChatTemplate::ChatMl {
                default_system: Some(
                    "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into()
                )
            }
        );
    }

    #[test]
    fn bad_roles_and_empty_conversations_are_errors() {
        let t = ChatTemplate::from_gguf_template(None);
        assert_eq!(t.render(&[], true), Err(ChatError::Empty));
        let m = ChatMessage {
            role: "wizard".into(),
            content: "x".into(),
        };
        assert_eq!(
            t.render(&[m], true),
            Err(ChatError::BadRole("wizard".into()))
        );
    }
}
