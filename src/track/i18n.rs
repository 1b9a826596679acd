//! The words of the recipients' pages, in English and Spanish, and the
//! choice between them: the contact's own `locale` when it names one we
//! have, else the browser's `Accept-Language` (RFC 9110 §12.5.4, by
//! quality), else English. Templates read the words as `t.KEY`; a
//! project's own templates can use the same keys or their own text.

use axum::http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Es,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Es => "es",
        }
    }

    /// `es`, `es-ES`, `ES_mx`, ... → Spanish; `en*` → English; else none.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Self::En),
            "es" => Some(Self::Es),
            _ => None,
        }
    }

    /// The contact's locale first, then the browser's, then English.
    pub fn choose(contact_locale: Option<&str>, headers: &HeaderMap) -> Self {
        contact_locale
            .and_then(Self::from_tag)
            .or_else(|| {
                headers
                    .get("accept-language")
                    .and_then(|v| v.to_str().ok())
                    .and_then(Self::from_accept_language)
            })
            .unwrap_or(Self::En)
    }

    /// The supported language with the highest quality; ties keep the
    /// header's order. Bounded: at most 32 entries are read.
    pub fn from_accept_language(value: &str) -> Option<Self> {
        let mut best: Option<(u32, Self)> = None;
        for item in value.split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("");
            let mut q = 1000u32;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .map(|q| (q * 1000.0) as u32)
                        .unwrap_or(0);
                }
            }
            if q == 0 {
                continue;
            }
            if let Some(lang) = Self::from_tag(tag)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }

    /// Every word of the pages in this language, for the templates' `t`.
    pub fn words(self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, en, es) in WORDS {
            let w = match self {
                Self::En => en,
                Self::Es => es,
            };
            m.insert((*k).into(), (*w).into());
        }
        serde_json::Value::Object(m)
    }

    pub fn word(self, key: &str) -> &'static str {
        WORDS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, en, es)| match self {
                Self::En => *en,
                Self::Es => *es,
            })
            .unwrap_or("")
    }
}

/// (key, English, Spanish).
const WORDS: &[(&str, &str, &str)] = &[
    ("skip", "Skip to content", "Ir al contenido"),
    ("address", "Address", "Dirección"),
    ("list", "List", "Lista"),
    ("every_list", "every list", "todas las listas"),
    ("unsub_title", "Unsubscribe", "Darse de baja"),
    (
        "unsub_question",
        "Do you want to stop receiving this list?",
        "¿Quiere dejar de recibir esta lista?",
    ),
    ("unsub_button", "Unsubscribe", "Darme de baja"),
    (
        "unsub_all_button",
        "Unsubscribe from all mail from us",
        "Darme de baja de todos nuestros envíos",
    ),
    (
        "not_subscribed",
        "This address is not subscribed to this list.",
        "Esta dirección no está suscrita a esta lista.",
    ),
    (
        "manage",
        "Manage all your subscriptions",
        "Gestionar todas sus suscripciones",
    ),
    ("unsubscribed_title", "Unsubscribed", "Baja confirmada"),
    (
        "unsubscribed_done",
        "You are unsubscribed. You will get no more messages from this list.",
        "Se ha dado de baja. No recibirá más mensajes de esta lista.",
    ),
    (
        "unsubscribed_all_done",
        "You are unsubscribed from all our mail.",
        "Se ha dado de baja de todos nuestros envíos.",
    ),
    (
        "already",
        "You were already unsubscribed.",
        "Ya se había dado de baja.",
    ),
    ("prefs_title", "Your subscriptions", "Sus suscripciones"),
    ("for_address", "For", "Para"),
    ("lists_legend", "Lists", "Listas"),
    (
        "no_lists",
        "You are on no list.",
        "No está en ninguna lista.",
    ),
    ("frequency_legend", "How often", "Frecuencia"),
    ("freq_all", "Every message", "Todos los mensajes"),
    (
        "freq_weekly",
        "At most one a week",
        "Como mucho uno a la semana",
    ),
    (
        "freq_monthly",
        "At most one a month",
        "Como mucho uno al mes",
    ),
    ("save", "Save", "Guardar"),
    (
        "unsub_everything",
        "Unsubscribe from everything",
        "Darme de baja de todo",
    ),
    ("details_legend", "Your details", "Sus datos"),
    ("first_name", "First name", "Nombre"),
    ("last_name", "Last name", "Apellidos"),
    ("save_details", "Save details", "Guardar datos"),
    ("download_legend", "What we hold", "Lo que guardamos"),
    (
        "download_text",
        "Download everything we hold about you, as JSON.",
        "Descargue todo lo que guardamos sobre usted, en JSON.",
    ),
    ("download", "Download my data", "Descargar mis datos"),
    ("forget_legend", "Forget me", "Olvidarme"),
    (
        "forget_text",
        "Ask us to erase everything we hold about you. A person handles each request.",
        "Pídanos que borremos todo lo que guardamos sobre usted. Una persona atiende cada solicitud.",
    ),
    (
        "forget_confirm",
        "I want my data erased",
        "Quiero que borren mis datos",
    ),
    (
        "forget_button",
        "Ask to be forgotten",
        "Solicitar el borrado",
    ),
    (
        "saved",
        "Your choices are saved.",
        "Sus preferencias se han guardado.",
    ),
    (
        "nothing",
        "Nothing to change.",
        "No había nada que cambiar.",
    ),
    (
        "details_saved",
        "Your details are saved.",
        "Sus datos se han guardado.",
    ),
    (
        "forget_recorded",
        "Your request to be forgotten is recorded. We answer it within one month (GDPR art. 12(3)).",
        "Su solicitud de borrado está registrada. La atendemos en el plazo de un mes (art. 12.3 del RGPD).",
    ),
    (
        "forget_already",
        "Your request to be forgotten is already recorded.",
        "Su solicitud de borrado ya estaba registrada.",
    ),
    (
        "forget_needs_confirm",
        "Tick the box to confirm the request.",
        "Marque la casilla para confirmar la solicitud.",
    ),
    ("error_title", "Something went wrong", "Algo ha fallado"),
    ("error_404_title", "Not found", "No encontrado"),
    (
        "error_404_text",
        "This link is not valid, or no longer.",
        "Este enlace no es válido o ya no lo es.",
    ),
    ("error_400_title", "Bad request", "Solicitud incorrecta"),
    (
        "error_400_text",
        "This link or form is damaged: check that the link was copied whole.",
        "Este enlace o formulario está dañado: compruebe que copió el enlace entero.",
    ),
    ("error_403_title", "Not allowed", "No permitido"),
    (
        "error_403_text",
        "This form has expired or was sent from another site. Reload the page and try again.",
        "Este formulario ha caducado o se envió desde otro sitio. Recargue la página e inténtelo de nuevo.",
    ),
    (
        "error_503_text",
        "We could not record this just now. Please try again in a minute.",
        "No hemos podido registrarlo ahora. Inténtelo de nuevo en un minuto.",
    ),
    ("error_detail", "Detail", "Detalle"),
    ("archive_title", "Archive", "Archivo"),
    (
        "archive_empty",
        "Nothing is published yet.",
        "Todavía no hay nada publicado.",
    ),
    ("archive_feed", "RSS feed", "Canal RSS"),
    (
        "confirm_title",
        "Confirm your subscription",
        "Confirme su suscripción",
    ),
    ("confirm_button", "Confirm", "Confirmar"),
    (
        "confirmed_title",
        "Subscription confirmed",
        "Suscripción confirmada",
    ),
    (
        "confirmed_text",
        "Thank you: you are subscribed.",
        "Gracias: ya está suscrito.",
    ),
    (
        "confirmed_already",
        "This subscription was confirmed already.",
        "Esta suscripción ya estaba confirmada.",
    ),
    (
        "confirm_question",
        "Do you want to receive this list at this address?",
        "¿Quiere recibir esta lista en esta dirección?",
    ),
    ("signup_title", "Subscribe", "Suscribirse"),
    ("signup_email", "Email address", "Correo electrónico"),
    ("signup_name", "Name (optional)", "Nombre (opcional)"),
    ("signup_consent", "I agree", "Acepto"),
    (
        "signup_tracking",
        "Optional: you may record when I open your messages and which links I follow, to tailor them to me.",
        "Opcional: pueden registrar cuándo abro sus mensajes y qué enlaces sigo, para adaptarlos a mí.",
    ),
    (
        "signup_honeypot",
        "Leave this field empty",
        "Deje este campo vacío",
    ),
    ("signup_button", "Subscribe", "Suscribirme"),
    ("signup_sent_title", "Check your inbox", "Revise su correo"),
    (
        "signup_sent_text",
        "Thank you. If this address can be subscribed, a message with a confirmation link is on its way: you are subscribed once you follow it.",
        "Gracias. Si esta dirección puede suscribirse, le llega un mensaje con un enlace de confirmación: quedará suscrito cuando lo siga.",
    ),
    (
        "signup_invalid_title",
        "Please check the form",
        "Revise el formulario",
    ),
    (
        "signup_invalid_text",
        "The form could not be taken as sent. Go back, correct it and send it again.",
        "No hemos podido aceptar el formulario tal como llegó. Vuelva atrás, corríjalo y envíelo de nuevo.",
    ),
    (
        "signup_limited_text",
        "Too many sign-ups from this network: please try again in an hour.",
        "Demasiadas suscripciones desde esta red: inténtelo de nuevo dentro de una hora.",
    ),
    (
        "tracking_label",
        "Let us see when you open and click",
        "Permitir que veamos cuándo abre y hace clic",
    ),
    (
        "tracking_title",
        "Stop tracking my opens and clicks",
        "Dejar de registrar mis aperturas y clics",
    ),
    (
        "tracking_question",
        "Do you want us to stop recording when you open our messages and which links you follow? You keep receiving the list.",
        "¿Quiere que dejemos de registrar cuándo abre nuestros mensajes y qué enlaces sigue? Seguirá recibiendo la lista.",
    ),
    (
        "tracking_button",
        "Stop tracking me",
        "Dejar de registrarme",
    ),
    (
        "tracking_done",
        "Done: we no longer record your opens and clicks as yours. You still receive the list.",
        "Hecho: ya no registramos sus aperturas y clics como suyos. Sigue recibiendo la lista.",
    ),
    (
        "tracking_not_given",
        "We do not record your opens and clicks as yours: there is nothing to stop. You still receive the list.",
        "No registramos sus aperturas y clics como suyos: no hay nada que detener. Sigue recibiendo la lista.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contact_locale_wins_then_the_browser_then_english() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept-language",
            "fr-CH, fr;q=0.9, es;q=0.8, en;q=0.7".parse().unwrap(),
        );
        assert_eq!(Lang::choose(None, &h), Lang::Es);
        assert_eq!(Lang::choose(Some("en_GB"), &h), Lang::En);
        assert_eq!(Lang::choose(Some("de"), &h), Lang::Es);
        assert_eq!(Lang::choose(None, &HeaderMap::new()), Lang::En);
        assert_eq!(
            Lang::from_accept_language("es;q=0, en;q=0.1"),
            Some(Lang::En)
        );
        assert_eq!(Lang::from_accept_language("es-MX"), Some(Lang::Es));
        assert_eq!(Lang::from_accept_language("de, *;q=0.1"), None);
        assert_eq!(Lang::from_accept_language(";;;,,q=x"), None);
    }

    #[test]
    fn both_languages_have_every_word() {
        for (k, en, es) in WORDS {
            assert!(!en.is_empty() && !es.is_empty(), "{k}");
        }
        let mut keys: Vec<_> = WORDS.iter().map(|w| w.0).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), WORDS.len(), "a key appears twice");
    }
}
