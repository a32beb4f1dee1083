//! The `--flag value` command lines of the benchmark examples.

/// The flags of `args` with their values, in order; a flag named in `switches` takes no
/// value (its `text` is empty). A flag missing its value is an error that shows `usage`.
pub fn pairs<'a>(args: &'a [String], usage: &'a str, switches: &'a [&'a str]) -> Pairs<'a> {
    Pairs {
        args: args.iter(),
        usage,
        switches,
    }
}

/// The iterator of [`pairs`].
pub struct Pairs<'a> {
    args: std::slice::Iter<'a, String>,
    usage: &'a str,
    switches: &'a [&'a str],
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<Flag<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let name = self.args.next()?;
        let text = if self.switches.contains(&name.as_str()) {
            ""
        } else {
            match self.args.next() {
                Some(text) => text,
                None => return Some(Err(format!("{name} needs a value\n{}", self.usage))),
            }
        };
        Some(Ok(Flag {
            name,
            text,
            usage: self.usage,
        }))
    }
}

/// One flag and its value.
pub struct Flag<'a> {
    pub name: &'a str,
    pub text: &'a str,
    usage: &'a str,
}

impl Flag<'_> {
    /// The value as a number.
    pub fn num(&self) -> Result<usize, String> {
        self.text
            .parse()
            .map_err(|_| format!("{}: {:?} is not a number", self.name, self.text))
    }

    /// The error for a flag the example does not know.
    pub fn unknown(&self) -> String {
        format!("unknown flag {}\n{}", self.name, self.usage)
    }
}
