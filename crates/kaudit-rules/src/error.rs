//! Why a rule does not compile, as typed values.
//!
//! Loading reports every failure as a [`crate::LoadError`] naming the file,
//! line and item; the errors here are what it carries as its source, so a
//! caller can tell an invalid regex from an unknown field without parsing
//! the message. Their text is exactly what the load error's reason shows.

use crate::parse::ParseError;

/// A Falco condition, exception or output template that does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A field name neither the k8saudit nor the json plugin defines.
    #[error("unknown field {0}")]
    UnknownField(String),
    /// An indexed field (`ka.req.pod.containers.image[0]`) given an
    /// argument that is not a number.
    #[error("field {field} takes a numeric index argument, got [{arg}]")]
    NumericArg {
        /// The field.
        field: String,
        /// The argument as written.
        arg: String,
    },
    /// A keyed field (`ka.uri.param[...]`) used without its key.
    #[error("field {field} requires a {what} argument: {field}[...]")]
    MissingArg {
        /// The field.
        field: String,
        /// What the argument names (`query parameter`).
        what: &'static str,
    },
    /// A field that takes no argument given one.
    #[error("field {field} takes no argument, got [{arg}]")]
    UnexpectedArg {
        /// The field.
        field: String,
        /// The argument as written.
        arg: String,
    },
    /// A macro reference left after expansion (compiling an AST that was
    /// never expanded).
    #[error("undefined macro {0}")]
    UndefinedMacro(String),
    /// A macro name no file defines, or a field written without an
    /// operator (Falco reads both the same way).
    #[error("undefined macro {0:?} (or a field used without an operator)")]
    UnknownMacro(String),
    /// A macro that expands to itself, directly or through others.
    #[error("macro {0} refers to itself")]
    MacroCycle(String),
    /// A macro whose condition does not parse.
    #[error("macro {name}: condition does not parse: {error}")]
    MacroParse {
        /// The macro.
        name: String,
        /// Where and why parsing stopped.
        #[source]
        error: ParseError,
    },
    /// A rule's own condition does not parse.
    #[error("condition does not parse: {0}")]
    ConditionParse(#[source] ParseError),
    /// Macros or parentheses nested beyond the expansion bound (most likely
    /// a cycle the name check cannot see).
    #[error("condition nests too deep")]
    TooDeep,
    /// Lists nested beyond the expansion bound (most likely a cycle).
    #[error("list {0} nests too deep (a cycle?)")]
    ListTooDeep(String),
    /// A comparison whose value does not suit its operator.
    #[error("{field} {op}: {error}")]
    Value {
        /// The field compared.
        field: String,
        /// The operator as written in rules (`bcontains`).
        op: &'static str,
        /// What is wrong with the value.
        #[source]
        error: ValueError,
    },
    /// An exception comparison operator Falco does not have.
    #[error("exception {exception}: unknown comp {comp:?}")]
    UnknownComp {
        /// The exception's name.
        exception: String,
        /// The operator as written.
        comp: String,
    },
    /// A multi-field exception whose value is not a list.
    #[error("exception {0}: each value must be a list matching 'fields'")]
    ExceptionValueNotList(String),
    /// A multi-field exception value with the wrong number of items.
    #[error("exception {exception}: a value has {values} items for {fields} fields")]
    ExceptionArity {
        /// The exception's name.
        exception: String,
        /// Items in the offending value.
        values: usize,
        /// Fields the exception names.
        fields: usize,
    },
    /// A field reference in the output template that does not resolve.
    #[error("output: {0}")]
    Output(#[source] Box<CompileError>),
}

/// A comparison value that does not suit its operator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A list given to an operator that compares one value.
    #[error("expects a single value")]
    ExpectsSingle,
    /// An operator that takes a list (`in`, `pmatch`) given nothing.
    #[error("expects a list")]
    ExpectsList,
    /// A `regex` value that does not compile (or exceeds the size bound).
    #[error("invalid regex: {0}")]
    Regex(#[source] regex::Error),
    /// A `bcontains`/`bstartswith` value with an odd number of hex digits.
    #[error("{0:?} is not an even number of hex digits")]
    OddHex(String),
    /// A `bcontains`/`bstartswith` value that is not hex.
    #[error("{0:?} is not hex")]
    NotHex(String),
}

/// A Sigma detection that kaudit cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SigmaError {
    /// A value modifier outside the supported set (`|base64`, `|wide`).
    #[error("modifier |{0} is not supported")]
    Modifier(String),
    /// A field's value that is a mapping or list of lists.
    #[error("{0}: values must be scalars")]
    NotScalar(String),
    /// A `|re` value that does not compile (or exceeds the size bound).
    #[error("{key}: invalid regex: {error}")]
    Regex {
        /// The field key with its modifiers.
        key: String,
        /// The regex compiler's error.
        #[source]
        error: regex::Error,
    },
    /// A `|cidr` value that is not a network.
    #[error("{key}: invalid CIDR {value:?}: {error}")]
    Cidr {
        /// The field key with its modifiers.
        key: String,
        /// The value as written.
        value: String,
        /// The address parser's error.
        #[source]
        error: ipnet::AddrParseError,
    },
    /// A `|lt`-style value that is not a number.
    #[error("{key}: {value:?} is not a number")]
    NotNumber {
        /// The field key with its modifiers.
        key: String,
        /// The value as written.
        value: String,
    },
    /// A search that is neither a mapping nor a list.
    #[error("a search must be a mapping or a list, got {0}")]
    Search(serde_json::Value),
    /// An aggregation (`| count() > 5`): it needs state across events.
    #[error("aggregations ('| count() ...') are not supported")]
    Aggregation,
    /// A condition token where none can stand.
    #[error("unexpected {0:?}")]
    Unexpected(String),
    /// A condition nested beyond the bound.
    #[error("condition nests too deep")]
    TooDeep,
    /// A condition that stops where an operand is needed.
    #[error("condition ends early")]
    EndsEarly,
    /// An opening parenthesis without its closing one.
    #[error("missing ')'")]
    MissingParen,
    /// `1`, `all` or `any` not followed by `of`.
    #[error("expected 'of' after {0:?}")]
    ExpectedOf(String),
    /// `1 of x*` where no search is named like `x*`.
    #[error("{0:?} matches no search identifier")]
    NoMatch(String),
    /// A condition naming a search the detection does not define.
    #[error("unknown search identifier {0:?}")]
    UnknownIdent(String),
}

/// A priority name Falco does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?}: want EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL/INFO or DEBUG")]
pub struct UnknownPriority(pub String);
